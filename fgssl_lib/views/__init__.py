"""fgssl_lib.views"""
