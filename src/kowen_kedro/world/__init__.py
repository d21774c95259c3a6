"""The tiny world: bilingual tasks whose right answer a program knows, and the gold reward.

``tasks`` (families, templates, parser), ``gold`` (gold reward, translation quality, corruptions),
``generate`` (the default raw inputs and the held-out gold set), ``oracle`` (the world's answer
program as an OpenAI-compatible loopback server). Pure Python: no Kedro, no torch.
"""

from kowen_kedro.world.gold import gold_reward, gold_rewards, is_correct, translation_quality

__all__ = ["gold_reward", "gold_rewards", "is_correct", "translation_quality"]
