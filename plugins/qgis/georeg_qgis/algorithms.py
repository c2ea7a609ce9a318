"""georeg's Processing algorithms: register, apply, batch."""

import json
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
MODELS = ["auto", "translation", "affine", "homography", "local", "similarity", "rigid"]
SEARCHES = ["auto", "shift", "rotation"]
MATCHERS = ["auto", "baseline", "kgl", "rrl"]
MODALITIES = ["auto", "optical", "sar", "thermal"]
# options with a parameter of their own above (saved models refer to these names); the rest of
# georeg's options become advanced OPT_<NAME> parameters made from georeg's option table
DEDICATED = {"model", "search", "matcher", "max_shift", "modality", "threshold", "align_grids", "ref_band",
             "target_band"}
SKIPPED = {"overwrite"}  # Processing replaces its own outputs


def _option_parameter(sp):
    """The Processing parameter of one entry of georeg's option table."""
    key, label = "OPT_" + sp["name"].upper(), f"{sp['flag'][2:]}: {sp['help']}"
    kind, default = sp["kind"], sp["default"]
    if kind == "choice":
        return QgsProcessingParameterEnum(key, label, sp["choices"], defaultValue=sp["choices"].index(default))
    if kind in ("int", "float"):
        typ = QgsProcessingParameterNumber.Integer if kind == "int" else QgsProcessingParameterNumber.Double
        return QgsProcessingParameterNumber(key, label, typ, default, optional=default is None)
    if kind in ("flag", "switch"):
        return QgsProcessingParameterBoolean(key, label, bool(default))
    if kind == "path":
        return QgsProcessingParameterFile(key, label, optional=True)
    if kind == "list":
        return QgsProcessingParameterString(key, label + " (separate items with ';')", optional=True)
    return QgsProcessingParameterString(key, label, defaultValue=default, optional=True)


def _option_value(alg, sp, parameters, context):
    """The value of an OPT_ parameter, or None when it was left empty."""
    key, kind = "OPT_" + sp["name"].upper(), sp["kind"]
    if kind == "choice":
        return sp["choices"][alg.parameterAsEnum(parameters, key, context)]
    if kind in ("flag", "switch"):
        return alg.parameterAsBoolean(parameters, key, context)
    if parameters.get(key) in (None, ""):
        return None
    if kind == "int":
        return alg.parameterAsInt(parameters, key, context)
    if kind == "float":
        return alg.parameterAsDouble(parameters, key, context)
    text = alg.parameterAsFile(parameters, key, context) if kind == "path" else \
        alg.parameterAsString(parameters, key, context)
    if kind == "list":
        return [item.strip() for item in text.split(";") if item.strip()] or None
    return text or None


class _Base(QgsProcessingAlgorithm):
    def group(self):
        return "Co-registration"

    def groupId(self):  # noqa: N802
        return "coregistration"

    def icon(self):
        return QIcon(os.path.join(HERE, "icon.svg"))

    def createInstance(self):  # noqa: N802
        return type(self)()

    # each algorithm sets NAME, TITLE and HELP
    def name(self):
        return self.NAME

    def displayName(self):  # noqa: N802
        return self.TITLE

    def shortHelpString(self):  # noqa: N802
        return self.HELP

    def helpUrl(self):  # noqa: N802
        return "https://github.com/georeg/georeg#readme"


class RegisterAlgorithm(_Base):
    NAME = "register"
    TITLE = "Register SAR/thermal onto optical"
    HELP = ("Co-registers TARGET (SAR, thermal or infrared) onto REFERENCE (optical). georeg matches "
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
        # every other georeg option, from georeg's own option table (defaults and choices included)
        self.specs = [sp for sp in bridge.option_specs() if sp["name"] not in DEDICATED and sp["name"] not in SKIPPED]
        advanced += [_option_parameter(sp) for sp in self.specs]
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
        values = {
            "model": MODELS[self.parameterAsEnum(parameters, "MODEL", context)],
            "matcher": MATCHERS[self.parameterAsEnum(parameters, "MATCHER", context)],
            "max_shift": self.parameterAsString(parameters, "MAX_SHIFT", context) or None,
            "modality": MODALITIES[self.parameterAsEnum(parameters, "MODALITY", context)],
            "threshold": self.parameterAsDouble(parameters, "THRESHOLD", context),
            "search": SEARCHES[self.parameterAsEnum(parameters, "SEARCH", context)],
            "align_grids": self.parameterAsBoolean(parameters, "ALIGN_GRIDS", context),
            "ref_band": self.parameterAsInt(parameters, "REFERENCE_BAND", context) or None,
            "target_band": self.parameterAsInt(parameters, "TARGET_BAND", context) or None,
        }
        for sp in getattr(self, "specs", []):
            value = _option_value(self, sp, parameters, context)
            if value is not None and value != sp["default"]:
                values[sp["name"]] = value
        for name, layer in (("ref_crs", ref), ("target_crs", tgt)):
            crs = _crs_qgis_knows(layer)
            if crs and not values.get(name):
                values[name] = crs
        args = ["register", ref.source(), tgt.source(), "-o", output, "--tie-points", tie_points,
                "--report", report, "--quicklook", "none", "--overwrite", "--options-json", json.dumps(values)]
        result = _run(args, feedback)
        feedback.pushInfo(f"{result.get('model')}: {result.get('counts', {}).get('inliers')} inliers, "
                          f"RMSE {result.get('residuals', {}).get('rmse_px', float('nan')):.2f} px")
        if result.get("target"):  # how the target was read: its modality, the evidence, the matcher
            feedback.pushInfo(result["target"])
        if result.get("quality_text"):  # the verdict and the precision it measured
            feedback.pushInfo(result["quality_text"])
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


def _crs_qgis_knows(layer):
    """The layer's CRS where its file has a geotransform but no CRS of its own (a world file without
    a .prj, whose CRS the user set in QGIS), for georeg's --ref-crs/--target-crs/--crs; else None
    (georeg reads the file's own)."""
    crs = layer.crs()
    if not crs.isValid():
        return None
    try:
        from osgeo import gdal

        ds = gdal.Open(layer.source())
    except Exception:  # not a file GDAL opens by its source string (a web layer): nothing to add
        return None
    if ds is None or ds.GetProjection() or ds.GetGCPCount() or ds.GetGeoTransform(can_return_null=True) is None:
        return None
    return crs.authid() if crs.authid().upper().startswith("EPSG:") else crs.toWkt()


class ApplyAlgorithm(_Base):
    NAME = "apply"
    TITLE = "Apply a saved registration"
    HELP = ("Applies the registration stored in a georeg report (from 'Register SAR/thermal onto optical') "
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
        crs = _crs_qgis_knows(raster)
        res = _run(["apply", report, raster.source(), "-o", output, "--overwrite", *(["--crs", crs] if crs else [])],
                   feedback)
        feedback.pushInfo(f"{res.get('mode')}: {output}")
        return {"OUTPUT": output}


class BatchAlgorithm(_Base):
    NAME = "batch"
    TITLE = "Register many pairs (manifest)"
    HELP = ("Registers every pair of a CSV manifest (columns reference,target and optionally output and "
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
    """The same commands through georeg's Python API (QGIS progress and cancel); ``args`` are the
    CLI arguments the subprocess path would pass."""
    import georeg
    from georeg.errors import GeoregError

    cmd, rest = args[0], list(args[1:])
    try:
        if cmd == "register":
            return _register_in_process(georeg, rest, feedback)
        if cmd == "apply":
            from georeg.apply import apply_report

            return apply_report(rest[0], rest[1], _arg(rest, "-o"), overwrite=True)
        from pathlib import Path

        from georeg import batch

        outdir = _arg(rest, "-o")
        rows = batch.run(rest[0], outdir, workers=int(_arg(rest, "--workers")),
                         progress=lambda row, done, total: feedback.setProgress(100.0 * done / total))
        failed = [r for r in rows if r["status"] in ("failed", "uncertain")]
        return {"summary": str(Path(outdir) / "summary.csv"), "pairs": len(rows), "failed": len(failed)}
    except GeoregError as exc:
        from georeg.options import cli_words

        # as the command line (the subprocess path) says it: options by the names the dialog shows
        raise QgsProcessingException(cli_words(str(exc))) from None


def _arg(args, flag):
    return args[args.index(flag) + 1]


def _register_in_process(georeg, args, feedback):
    from georeg.options import config_from_options
    from georeg.outputs import modality_text, quality_text

    output = _arg(args, "-o")
    cfg = config_from_options(json.loads(_arg(args, "--options-json"))).with_options(
        output={"tie_points": _arg(args, "--tie-points"), "report": _arg(args, "--report"), "quicklook": None,
                "overwrite": True})
    res = georeg.register(args[0], args[1], output, cfg,
                          progress=lambda f, m: (feedback.setProgress(100.0 * f), feedback.setProgressText(m)),
                          cancel=feedback.isCanceled)
    rep = res.report
    if rep["quality"] != "reliable":
        feedback.reportError(f"georeg: the result is {rep['quality']}: {rep['verdict']['reason']}", False)
    return {"outputs": res.outputs, "model": rep["model"]["type"], "residuals": rep["residuals"],
            "counts": rep["counts"], "quality": rep["quality"], "target": modality_text(rep),
            "quality_text": quality_text(rep)}
