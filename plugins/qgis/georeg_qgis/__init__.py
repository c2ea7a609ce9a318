"""georeg processing provider for QGIS. Imports only qgis and PyQt; georeg itself runs in-process
when QGIS's Python can import it, otherwise in a configured Python environment."""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import GeoregPlugin

    return GeoregPlugin(iface)
