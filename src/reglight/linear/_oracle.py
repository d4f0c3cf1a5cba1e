"""Access to the least-squares Hessian `XᵀX/n` for the path solvers, in two storage modes.

* `GramOracle` -- the whole Gram matrix, computed once (`n_samples > n_features`).
* `DesignOracle` -- Gram blocks computed lazily for the features that screening lets in and
  cached (`n_features >= n_samples`); the KKT check multiplies by `X` directly.

Both also return the correlations with the residual, `Xᵀ(y - Xw)/n`, for every feature: the
quantity the strong rule and the KKT check need.
"""

from __future__ import annotations

import torch

__all__ = ["DesignOracle", "GramOracle", "HessianOracle", "gram"]


def gram(X: torch.Tensor, block: int = 128) -> torch.Tensor:
    """`XᵀX`, computing only the blocks on and above the diagonal (the rest by symmetry).

    torch has no `syrk`; for `p >= 2·block` the column blocks `X_iᵀ X_{i:}` cost about
    `(1/2 + block/(2p))` of a full product.

    Examples:
        >>> import torch
        >>> X = torch.randn(50, 300, dtype=torch.float64)
        >>> torch.allclose(gram(X, block=64), X.T @ X)
        True
    """
    p = X.shape[1]
    if p < 2 * block:
        return X.T @ X
    G = X.new_empty(p, p)
    for i in range(0, p, block):
        B = X[:, i : i + block].T @ X[:, i:]
        G[i : i + block, i:] = B
        G[i:, i : i + block] = B.T
    return G


class HessianOracle:
    """Interface: `c = Xᵀy/n`, `block(W)` = `(XᵀX/n)[W][:, W]`, `corr(A, w_A)`."""

    c: torch.Tensor
    n_features: int

    def block(self, W: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """The Hessian block of the features `W` (a LongTensor of indices)."""
        raise NotImplementedError

    def locate(
        self, W: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # pragma: no cover
        """A matrix `G` and positions `cols` with `G[cols][:, cols]` the block of `W`
        (`cols=None`: `G` is the block itself), without copying the block."""
        raise NotImplementedError

    def corr(self, A: torch.Tensor, wA: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """`Xᵀ(y - X_A w_A)/n` for every feature."""
        raise NotImplementedError

    def hess_cols(self, A: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """`(XᵀX/n)[:, A] @ Z` for a (|A|, m) matrix `Z`: a (n_features, m) matrix."""
        raise NotImplementedError


class GramOracle(HessianOracle):
    """The full Gram matrix `H = XᵀX/n` (or a user-supplied one)."""

    def __init__(self, H: torch.Tensor, c: torch.Tensor) -> None:
        self.H = H
        self.c = c
        self.n_features = H.shape[0]

    @classmethod
    def from_data(cls, X: torch.Tensor, y: torch.Tensor) -> GramOracle:
        n = X.shape[0]
        return cls(gram(X).div_(n), (X.T @ y) / n)

    def block(self, W: torch.Tensor) -> torch.Tensor:
        """The block of `W` (sorted, as every index set here comes from `nonzero`)."""
        if W.shape[0] == self.n_features:
            return self.H
        return self.H[W.unsqueeze(1), W]

    def locate(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(H, None)` when `W` (sorted) is every feature, else `(H, W)`."""
        return self.H, (None if W.shape[0] == self.n_features else W)

    def corr(self, A: torch.Tensor, wA: torch.Tensor) -> torch.Tensor:
        if A.numel() == 0:
            return self.c.clone()
        return self.c - self.H[:, A] @ wA

    def hess_cols(self, A: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
        return self.H[:, A] @ Z


class DesignOracle(HessianOracle):
    """Gram columns computed on demand from `X` and cached (capacity doubles as it fills).

    Examples:
        >>> import torch
        >>> X, y = torch.randn(20, 8, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
        >>> W = torch.tensor([1, 5])
        >>> torch.allclose(DesignOracle(X, y).block(W), GramOracle.from_data(X, y).block(W))
        True
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X = X
        self.n = X.shape[0]
        self.n_features = X.shape[1]
        self.c = (X.T @ y) / self.n
        self.y = y
        self.pos = torch.full((self.n_features,), -1, dtype=torch.long, device=X.device)
        self.size = 0
        cap = min(self.n_features, 64)
        self.G = X.new_empty(cap, cap)
        self.XS = X.new_empty(self.n, cap)

    def _grow(self, need: int) -> None:
        cap = self.G.shape[0]
        if need <= cap:
            return
        new_cap = min(self.n_features, max(need, 2 * cap))
        G = self.X.new_empty(new_cap, new_cap)
        G[: self.size, : self.size] = self.G[: self.size, : self.size]
        XS = self.X.new_empty(self.n, new_cap)
        XS[:, : self.size] = self.XS[:, : self.size]
        self.G, self.XS = G, XS

    def _add(self, new: torch.Tensor) -> None:
        m = new.shape[0]
        s = self.size
        self._grow(s + m)
        Xn = self.X[:, new]
        self.XS[:, s : s + m] = Xn
        block = (self.XS[:, : s + m].T @ Xn) / self.n
        self.G[: s + m, s : s + m] = block
        self.G[s : s + m, :s] = block[:s].T
        self.pos[new] = torch.arange(s, s + m, device=new.device)
        self.size = s + m

    def locate(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        p = self.pos[W]
        missing = p < 0
        if bool(missing.any()):
            self._add(W[missing])
            p = self.pos[W]
        return self.G, p

    def block(self, W: torch.Tensor) -> torch.Tensor:
        G, p = self.locate(W)
        assert p is not None
        return G[p.unsqueeze(1), p]

    def corr(self, A: torch.Tensor, wA: torch.Tensor) -> torch.Tensor:
        if A.numel() == 0:
            return self.c.clone()
        p = self.pos[A]
        r = self.y - self.XS[:, p] @ wA
        return (self.X.T @ r) / self.n

    def hess_cols(self, A: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
        return (self.X.T @ (self.XS[:, self.pos[A]] @ Z)) / self.n
