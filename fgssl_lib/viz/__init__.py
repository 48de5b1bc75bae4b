"""fgssl_lib.viz"""
