"""georeg's Processing algorithms: register, apply, batch."""

import os

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QIcon

from . import bridge

HERE = os.path.dirname(__file__)
# new choices go at the end: saved QGIS models store the index
MODELS = ["auto", "translation", "affine", "homography", "local", "similarity"]
SEARCHES = ["auto", "shift", "rotation"]
MATCHERS = ["auto", "baseline", "kgl", "rrl"]
MODALITIES = ["auto", "optical", "sar", "thermal"]


class _Base(QgsProcessingAlgorithm):
    def group(self):
        return "Co-registration"

    def groupId(self):  # noqa: N802
        return "coregistration"

    def icon(self):
        return QIcon(os.path.join(HERE, "icon.svg"))

    def createInstance(self):  # noqa: N802
        return type(self)()

    def helpUrl(self):  # noqa: N802
        return "https://github.com/georeg/georeg#readme"


class RegisterAlgorithm(_Base):
    def name(self):
        return "register"

    def displayName(self):  # noqa: N802
        return "Register SAR/thermal onto optical"

    def shortHelpString(self):  # noqa: N802
        return ("Co-registers TARGET (SAR, thermal or infrared) onto REFERENCE (optical). georeg matches "
                "structure rather than brightness, tile by tile, estimates the transform robustly (MODEL) and "
                "writes the corrected raster, the tie points with residuals and inlier flags, and a JSON report. "
                "MAX SHIFT is the largest expected misregistration in reference pixels ('40') or metres "
                "('400m'); a coarse pass finds larger shifts. Bands default to luminance (reference) and band 1. "
                "Translation and affine keep the target's pixels and change only its georeferencing.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", "Reference raster (optical)"))
        self.addParameter(QgsProcessingParameterRasterLayer("TARGET", "Target raster (SAR, thermal, infrared)"))
        self.addParameter(QgsProcessingParameterBand("REFERENCE_BAND", "Reference band (empty: luminance)",
                                                     None, "REFERENCE", optional=True))
        self.addParameter(QgsProcessingParameterBand("TARGET_BAND", "Target band (empty: band 1)", None, "TARGET",
                                                     optional=True))
        self.addParameter(QgsProcessingParameterEnum("MODEL", "Transform model", MODELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            "SEARCH", "Rotation/scale search (auto: when the georeferenced search finds no clear model)", SEARCHES,
            defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum("MATCHER", "Matcher", MATCHERS, defaultValue=0))
        self.addParameter(QgsProcessingParameterString("MAX_SHIFT", "Max shift (pixels, or metres with 'm')",
                                                       defaultValue="40"))
        advanced = [
            QgsProcessingParameterEnum("MODALITY", "Target modality", MODALITIES, defaultValue=0),
            QgsProcessingParameterNumber("THRESHOLD", "RANSAC inlier threshold (px)",
                                         QgsProcessingParameterNumber.Double, 3.0, minValue=0.1),
            QgsProcessingParameterBoolean("ALIGN_GRIDS", "Resample onto the reference grid", False),
        ]
        for p in advanced:
            p.setFlags(p.flags() | p.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Registered raster"))
        self.addParameter(QgsProcessingParameterFeatureSink("TIE_POINTS", "Tie points",
                                                            QgsProcessing.TypeVectorPoint, optional=True))
        self.addParameter(QgsProcessingParameterFileDestination("REPORT", "Report", "JSON files (*.json)",
                                                                optional=True))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        ref = self.parameterAsRasterLayer(parameters, "REFERENCE", context)
        tgt = self.parameterAsRasterLayer(parameters, "TARGET", context)
        if ref is None or tgt is None:
            raise QgsProcessingException("both REFERENCE and TARGET must be raster layers")
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        report = self.parameterAsFileOutput(parameters, "REPORT", context) or \
            QgsProcessingUtils.generateTempFilename("georeg_report.json")
        tie_points = QgsProcessingUtils.generateTempFilename("georeg_tiepoints.gpkg")
        ref_band = self.parameterAsInt(parameters, "REFERENCE_BAND", context) or None
        tgt_band = self.parameterAsInt(parameters, "TARGET_BAND", context) or None
        args = ["register", ref.source(), tgt.source(), "-o", output, "--tie-points", tie_points,
                "--report", report, "--quicklook", "none", "--overwrite",
                "--model", MODELS[self.parameterAsEnum(parameters, "MODEL", context)],
                "--matcher", MATCHERS[self.parameterAsEnum(parameters, "MATCHER", context)],
                "--max-shift", self.parameterAsString(parameters, "MAX_SHIFT", context) or "40",
                "--modality", MODALITIES[self.parameterAsEnum(parameters, "MODALITY", context)],
                "--threshold", str(self.parameterAsDouble(parameters, "THRESHOLD", context)),
                "--search", SEARCHES[self.parameterAsEnum(parameters, "SEARCH", context)]]
        if ref_band:
            args += ["--ref-band", str(ref_band)]
        if tgt_band:
            args += ["--target-band", str(tgt_band)]
        if self.parameterAsBoolean(parameters, "ALIGN_GRIDS", context):
            args.append("--align-grids")
        result = _run(args, feedback)
        feedback.pushInfo(f"{result.get('model')}: {result.get('counts', {}).get('inliers')} inliers, "
                          f"RMSE {result.get('residuals', {}).get('rmse_px', float('nan')):.2f} px")
        out = {"OUTPUT": output, "REPORT": report}
        layer = QgsVectorLayer(f"{tie_points}|layername=tie_points", "tie points", "ogr")
        if not layer.isValid():
            raise QgsProcessingException(f"georeg wrote no readable tie points ({tie_points})")
        sink, dest = self.parameterAsSink(parameters, "TIE_POINTS", context, layer.fields(), QgsWkbTypes.Point,
                                          layer.crs())
        if sink is not None:
            for f in layer.getFeatures():
                sink.addFeature(f, QgsFeatureSink.FastInsert)
            out["TIE_POINTS"] = dest
        return out


class ApplyAlgorithm(_Base):
    def name(self):
        return "apply"

    def displayName(self):  # noqa: N802
        return "Apply a saved registration"

    def shortHelpString(self):  # noqa: N802
        return ("Applies the registration stored in a georeg report (from 'Register SAR/thermal onto optical') "
                "to another raster of the same scene, for example the other polarisation or bands, so that "
                "they all get the same correction.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile("REPORT", "georeg report (JSON)", extension="json"))
        self.addParameter(QgsProcessingParameterRasterLayer("RASTER", "Raster to correct"))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Corrected raster"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        report = self.parameterAsFile(parameters, "REPORT", context)
        raster = self.parameterAsRasterLayer(parameters, "RASTER", context)
        if raster is None:
            raise QgsProcessingException("RASTER must be a raster layer")
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        res = _run(["apply", report, raster.source(), "-o", output, "--overwrite"], feedback)
        feedback.pushInfo(f"{res.get('mode')}: {output}")
        return {"OUTPUT": output}


class BatchAlgorithm(_Base):
    def name(self):
        return "batch"

    def displayName(self):  # noqa: N802
        return "Register many pairs (manifest)"

    def shortHelpString(self):  # noqa: N802
        return ("Registers every pair of a CSV manifest (columns reference,target and optionally output and "
                "per-row options) into an output folder, with a summary.csv of each pair's status, RMSE and "
                "inliers. A failed pair is recorded and does not stop the others; a rerun skips finished pairs.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile("MANIFEST", "Manifest (CSV)", extension="csv"))
        self.addParameter(QgsProcessingParameterNumber("WORKERS", "Worker processes",
                                                       QgsProcessingParameterNumber.Integer, 1, minValue=1))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTDIR", "Output folder"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        manifest = self.parameterAsFile(parameters, "MANIFEST", context)
        outdir = self.parameterAsString(parameters, "OUTDIR", context)
        workers = self.parameterAsInt(parameters, "WORKERS", context)
        res = _run(["batch", manifest, "-o", outdir, "--workers", str(workers)], feedback)
        if res.get("failed"):
            feedback.reportError(f"{res['failed']} of {res['pairs']} pairs failed; see {res['summary']}")
        return {"OUTDIR": outdir, "SUMMARY": res.get("summary")}


def _run(args, feedback):
    """In-process when georeg imports in QGIS's Python, else through the configured environment."""
    if bridge.in_process():
        return _run_in_process(args, feedback)
    return bridge.run_cli(args, feedback)


def _run_in_process(args, feedback):
    """georeg's own CLI parsing, then the library call with QGIS progress and cancel."""
    import json

    from georeg import cli
    from georeg.errors import GeoregError

    if args[0] == "register":
        ctx = cli.register.make_context("register", list(args[1:]))
        p = dict(ctx.params)
        cfg = cli.build_config(p, cli._sibling(p["output"], p["tie_points"], "_tiepoints.gpkg"),
                               cli._sibling(p["output"], p["report"], "_report.json"),
                               cli._sibling(p["output"], p["quicklook"], "_quicklook.png"))
        import georeg

        try:
            res = georeg.register(p["reference"], p["target"], p["output"], cfg,
                                  progress=lambda f, m: (feedback.setProgress(100.0 * f), feedback.setProgressText(m)),
                                  cancel=feedback.isCanceled)
        except GeoregError as exc:
            raise QgsProcessingException(str(exc)) from None
        rep = res.report
        if rep["quality"] != "reliable":
            feedback.reportError(f"georeg: the result is {rep['quality']}: {rep['verdict']['reason']}", False)
        return {"outputs": res.outputs, "model": rep["model"]["type"], "residuals": rep["residuals"],
                "counts": rep["counts"], "quality": rep["quality"]}
    from click.testing import CliRunner

    out = CliRunner().invoke(cli.georeg, ["--machine", *args])
    for line in out.output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
        if line.startswith("Error"):
            raise QgsProcessingException(line)
    if out.exit_code != 0:
        raise QgsProcessingException(out.output.strip().splitlines()[-1] if out.output.strip() else "georeg failed")
    return {}
