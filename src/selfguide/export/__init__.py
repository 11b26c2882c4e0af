"""Exports of a run: datasets in five formats with a dataset card, the model card, Hub pushes."""

from selfguide.export.formats import FORMATS, ExportResult, export_run

__all__ = ["FORMATS", "ExportResult", "export_run"]
