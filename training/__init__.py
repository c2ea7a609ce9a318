"""Training and evaluation of georeg's learned patch matchers (KGL-Net, RRL-Net).

``python -m training --help``. This package imports georeg; georeg never imports it.
"""
