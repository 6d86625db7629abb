"""The NiceGUI screens: a shell around :class:`netids.controller.Controller`.

Pages (one route each, built by ``netids.webapp``; no page imports another): ``dashboard``,
``rules`` (also the "Mark as expected" dialog the event detail opens),
``history``, ``training``, ``login``. Shared, not pages: ``frame`` (header, navigation, the
admin check), ``event_detail`` (the event dialog both event tables open), ``connections``
(the history page's Connections view), ``paged`` (what its two views share: filter,
paging, sorting and export), ``learning_card`` (the
dashboard's learning banner), ``capture_form``,
``charts``, ``threshold``, ``theme``, ``gate`` (the LAN login gate behind ``login``) and
``http_guards`` (security headers and the upload limit, in front of every page).

Pages read the controller's published state (:mod:`netids.live`) and call its commands and
the store's query and export functions; they import no capture, detect or training module and
never touch the capture thread, the model or the database writer (DESIGN.md).
"""
