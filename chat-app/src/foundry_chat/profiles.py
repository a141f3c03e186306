"""The chat profiles (Chainlit's profile picker): what each is for, its system prompt and its default route.

The route of each one is sent to the router as the `X-Foundry-Route` header; PROFILE_ROUTES changes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundry_common.protocol import Route

CODE_PROMPT = "You are a careful programming assistant. Answer with short explanations and correct code."


@dataclass(frozen=True)
class Profile:
    key: str  # in PROFILE_ROUTES
    label: str  # what the picker shows, and what Chainlit keeps in the session as "chat_profile"
    description: str
    default_route: Route
    # The profile's own system prompt; None: SYSTEM_PROMPT.
    system_prompt: str | None = None


PROFILES: dict[str, Profile] = {
    "general": Profile("general", "General", "Everyday questions.", "auto"),
    "code": Profile("code", "Code", "Programming help.", "local", CODE_PROMPT),
}
DEFAULT_PROFILE = PROFILES["general"]
DEFAULT_ROUTES: dict[str, Route] = {key: profile.default_route for key, profile in PROFILES.items()}


def profile_by_label(label: object) -> Profile:
    """The session's profile from the label Chainlit keeps; the default for anything else."""
    return next((p for p in PROFILES.values() if p.label == label), DEFAULT_PROFILE)
