"""The NiceGUI pages: dashboard, history, training, event detail; shared frame and theme.

Pages only read :class:`netids.controller.Controller` state and call its commands; they never
touch the capture thread, the model or the database writer (DESIGN.md).
"""
