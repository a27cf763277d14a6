"""Typed errors of the pagopa service (stable codes; the gateway maps them to HTTP statuses)."""

from __future__ import annotations

from sportello.errors import SportelloError


class InvalidTransition(SportelloError):
    """The position is not in a state that allows this (e.g. invalidating a paid position)."""

    code = "pagopa.position.invalid_transition"
    title = "The payment position does not allow this in its current state"


class GpdUnavailable(SportelloError):
    """GPD did not answer usefully after the retries allowed (429/5xx/timeouts)."""

    code = "pagopa.gpd.unavailable"
    title = "pagoPA GPD is not available"


class GpdRejected(SportelloError):
    """GPD refused the request for good (4xx other than 409/429): our data or our key is wrong."""

    code = "pagopa.gpd.rejected"
    title = "pagoPA GPD rejected the request"


class CheckoutUnavailable(SportelloError):
    """Checkout did not give a payment page (refused the cart, or kept failing)."""

    code = "pagopa.checkout.unavailable"
    title = "pagoPA Checkout could not start the payment"


class NotPayable(SportelloError):
    """The position cannot be paid now (paid, expired, cancelled, or past its due date)."""

    code = "pagopa.position.not_payable"
    title = "The payment position cannot be paid"


class NodoUnavailable(SportelloError):
    """The Nodo's reporting-flow service did not answer usefully after the retries allowed."""

    code = "pagopa.nodo.unavailable"
    title = "The pagoPA Nodo is not available"


class NodoRejected(SportelloError):
    """The Nodo refused our request (a PPT_* fault: credentials, station, flow id) or answered
    something that breaks its schema."""

    code = "pagopa.nodo.rejected"
    title = "The pagoPA Nodo rejected the request"


class IdempotencyConflict(SportelloError):
    """The same Idempotency-Key was used before with different content."""

    code = "pagopa.idempotency.conflict"
    title = "This Idempotency-Key was used for a different request"
