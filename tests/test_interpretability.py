"""The stationary dictionary of TMLR 2023 Thm 5.1 in the row convention, and its input checks."""

import pytest
import torch

from udlbench import interpretability

pytestmark = pytest.mark.fast


def test_stationary_dictionary_zeroes_the_ridge_gradient():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 8, generator=g, dtype=torch.float64)
    Z = torch.randn(50, 12, generator=g, dtype=torch.float64)
    D = interpretability.stationary_dictionary(X, Z, omega=0.5)
    assert D.shape == (8, 12)
    grad = -(X - Z @ D.T).T @ Z + 0.5 * D
    assert float(grad.norm()) < 1e-12 * float(X.norm() * Z.norm())
    beta = interpretability.reconstruction_weights(Z, Z[:3], omega=0.5)
    assert torch.allclose(beta @ X, Z[:3] @ D.T, atol=1e-12)


def test_bad_input_names_the_argument():
    X = torch.randn(50, 8, dtype=torch.float64)
    Z = torch.randn(50, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="omega"):
        interpretability.stationary_dictionary(X, Z, omega=0.0)
    with pytest.raises(ValueError, match="omega"):
        interpretability.code_gram(Z, omega=-1.0)
    with pytest.raises(ValueError, match="samples"):
        interpretability.stationary_dictionary(X[:10], Z, omega=0.1)
    with pytest.raises(ValueError, match="atoms"):
        interpretability.reconstruction_weights(Z, Z[:, :5], omega=0.1)
