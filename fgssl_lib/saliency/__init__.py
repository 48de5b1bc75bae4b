"""fgssl_lib.saliency"""
