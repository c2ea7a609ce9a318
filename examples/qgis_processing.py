"""georeg from QGIS Processing, headless: run with QGIS's own Python (not georeg's environment).

    GEOREG_PYTHON=/path/to/georeg/.venv/bin/python QT_QPA_PLATFORM=offscreen \\
        /usr/bin/python3 examples/qgis_processing.py REFERENCE TARGET OUTPUT

In the QGIS desktop the same algorithms are in the Processing Toolbox under "georeg" once the
plugin is installed (Plugins > Manage and Install Plugins > Install from ZIP, with the zip that
`python plugins/qgis/build_zip.py` builds). Set Processing > Options > Providers > georeg >
"Python of the georeg environment" unless georeg is installed in QGIS's own Python.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, "/usr/share/qgis/python/plugins")  # QGIS's 'processing' package (Debian/Ubuntu layout)
sys.path.insert(0, os.path.join(HERE, "..", "plugins", "qgis"))  # the plugin, straight from the repository

from qgis.core import QgsApplication, QgsProcessingFeedback  # noqa: E402


class PrintFeedback(QgsProcessingFeedback):
    def pushInfo(self, info):  # noqa: N802
        print(info)


def start_qgis():
    """A headless QGIS with Processing and the georeg provider; returns (app, provider)."""
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    from georeg_qgis.provider import GeoregProvider

    provider = GeoregProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    return app, provider


def main(reference, target, output):
    app, provider = start_qgis()
    import processing

    stem = os.path.splitext(output)[0]
    result = processing.run("georeg:register", {
        "REFERENCE": reference, "TARGET": target, "OUTPUT": output,
        "TIE_POINTS": stem + "_tiepoints.gpkg", "REPORT": stem + "_report.json",
    }, feedback=PrintFeedback())
    print("outputs:", {k: v for k, v in result.items()})
    QgsApplication.processingRegistry().removeProvider(provider)
    app.exitQgis()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
