"""Supervision helpers: the embedded run (`domos run`) and supervisord integration."""
