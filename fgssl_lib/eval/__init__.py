"""fgssl_lib.eval"""
