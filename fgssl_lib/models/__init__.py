"""fgssl_lib.models"""
