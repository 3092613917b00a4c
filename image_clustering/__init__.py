"""imgclust: group a photo collection by visual content.

Notebook use mirrors the command-line tool::

    from image_clustering import load_config, pipeline
    config = load_config("configs/configs.json")
    pipeline.download(config)
    pipeline.extract(config)
    print(pipeline.find_k(config).suggested_k)
    result = pipeline.cluster(config)
"""
from .config import Config, config_from_dict, load_config
from .errors import ImgclustError

__all__ = ["Config", "ImgclustError", "config_from_dict", "load_config"]
