"""The web interface served under ``/ui`` (see ``api.ui.app``)."""
