"""The live wall display (issue 3).

``board`` holds the pure board rules (what a message does to a unit's row), ``board_writer``
keeps the board in Redis from the output topics, ``gateway`` serves the page and a push
stream to the screens, ``static/`` is the page itself.
"""
