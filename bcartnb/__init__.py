"""bcartnb: B-Cart member mail delivery from JupyterLab, papermill and the command line."""

__version__ = "0.1.0"
