# Sourced by setup.sh, test.sh and demo.sh from the checkout's root: sets PYTHON, the
# interpreter Bando is installed into and run with. $PYTHON when given; else the checkout's .venv when there is one; else
# python3, unless that is a distribution's own interpreter that refuses pip installs (PEP 668,
# "externally managed", as Debian 12's): then a .venv in the checkout (setup.sh creates it).
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $PWD/.venv/bin/python ]]; then
    PYTHON=$PWD/.venv/bin/python
  elif python3 - <<'PY'
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(marker) else 1)
PY
  then
    PYTHON=$PWD/.venv/bin/python
  else
    PYTHON=python3
  fi
fi
