import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ApplyAlgorithm, BatchAlgorithm, RegisterAlgorithm
from .bridge import SETTING_PYTHON

HERE = os.path.dirname(__file__)


class GeoregProvider(QgsProcessingProvider):
    def id(self):
        return "georeg"

    def name(self):
        return "georeg"

    def longName(self):  # noqa: N802
        return "georeg: SAR and thermal co-registration"

    def icon(self):
        return QIcon(os.path.join(HERE, "icon.svg"))

    def load(self):
        try:  # the Processing settings dialog; absent in some headless set-ups
            from processing.core.ProcessingConfig import ProcessingConfig, Setting

            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(Setting(
                self.name(), SETTING_PYTHON,
                "Python of the georeg environment (when QGIS's own Python cannot import georeg)",
                os.environ.get("GEOREG_PYTHON", ""), valuetype=Setting.FILE))
            ProcessingConfig.readSettings()
        except ImportError:
            pass
        self.refreshAlgorithms()
        return True

    def unload(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig

            ProcessingConfig.removeSetting(SETTING_PYTHON)
        except (ImportError, KeyError):
            pass

    def loadAlgorithms(self):  # noqa: N802
        for alg in (RegisterAlgorithm(), ApplyAlgorithm(), BatchAlgorithm()):
            self.addAlgorithm(alg)
