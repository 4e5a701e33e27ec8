"""The error the cross-sell analytics raise on invalid input."""


class CrossSellError(ValueError):
    """Invalid input to the cross-sell analytics (a holding frame that is not 0/1, a bad threshold)."""


__all__ = ["CrossSellError"]
