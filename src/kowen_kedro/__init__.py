"""kowen-kedro: bilingual LLM post-training from synthetic data, as Kedro pipelines."""

__version__ = "0.1.0"
