"""Thumbs up or down on an answer, with an optional comment: stored with the answer, counted in /metrics.

These replace Chainlit's `PUT /feedback` and `DELETE /feedback`, which store whatever message id they are given:
any logged-in user could rate (or delete the rating of) another user's answer. Ours check that the answer is in
one of the caller's own threads first.
"""

from __future__ import annotations

from typing import Annotated, Any

from chainlit.auth import get_current_user
from chainlit.types import DeleteFeedbackRequest, UpdateFeedbackRequest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse

from foundry_chat.service import Service

MAX_COMMENT_CHARS = 4000
NOT_FOUND = "That answer is not in your conversations (it may have been deleted)."

CurrentUser = Annotated[Any, Depends(get_current_user)]


def check_owner(owner: str | None, user: Any) -> None:
    """404 for an answer that is not there or not the caller's: whose it is stays unsaid."""
    if user is None:
        raise HTTPException(401, detail="Log in to rate answers.")
    if owner is None or owner != user.identifier:
        raise HTTPException(404, detail=NOT_FOUND)


def add_feedback_routes(app: FastAPI, service: Service) -> None:
    def layer() -> Any:
        active = service.history.active
        if active is None:
            raise HTTPException(503, detail=f"Ratings are off: {service.history.problem or 'the history is off'}.")
        return active

    @app.put("/feedback", include_in_schema=False)
    async def rate(update: UpdateFeedbackRequest, user: CurrentUser) -> JSONResponse:
        feedback = update.feedback
        if feedback.comment and len(feedback.comment) > MAX_COMMENT_CHARS:
            raise HTTPException(
                413, detail=f"The comment is {len(feedback.comment)} characters; the limit is {MAX_COMMENT_CHARS}."
            )
        history = layer()
        check_owner(await history.owner_of_step(feedback.forId), user)
        feedback_id = await history.upsert_feedback(feedback)
        service.metrics.feedback.labels("up" if feedback.value == 1 else "down").inc()
        return JSONResponse({"success": True, "feedbackId": feedback_id})

    @app.delete("/feedback", include_in_schema=False)
    async def unrate(payload: DeleteFeedbackRequest, user: CurrentUser) -> JSONResponse:
        history = layer()
        check_owner(await history.owner_of_feedback(payload.feedbackId), user)
        await history.delete_feedback(payload.feedbackId)
        return JSONResponse({"success": True})
