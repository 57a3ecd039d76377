"""Auth endpoints (register, login, refresh, logout, me, ws-ticket) and the
secrets store.

Tokens are answered as `{access_token, refresh_token, token_type, expires_in}`;
every token problem is a 401 with the API's error body.
"""

from __future__ import annotations

import time

from django.contrib.auth import authenticate
from django.db import IntegrityError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from accounts import secrets, services
from accounts.api.serializers import (
    LoginSerializer,
    LogoutSerializer,
    RefreshTokenSerializer,
    RegisterSerializer,
    SecretSerializer,
    TokenPairSerializer,
    UserSerializer,
    WsTicketSerializer,
)
from accounts.api.throttles import LoginAddressRateThrottle, LoginRateThrottle
from accounts.models import Secret
from core.parsers import (
    StrictFormParser,
    StrictJSONParser,
    StrictMultiPartParser,
)

#: Credentials are flat text, so the auth views take HTML forms as well as JSON.
AUTH_PARSERS = [StrictJSONParser, StrictFormParser, StrictMultiPartParser]


class AnonymousAuthView(APIView):
    """An auth endpoint open to anonymous callers; it ignores any credentials sent."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    parser_classes = AUTH_PARSERS

    # Token failures stay 401: DRF answers 403 instead when a view has no
    # authenticator to name in `WWW-Authenticate`.
    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class RegisterView(AnonymousAuthView):
    """Creates an account. Open to anyone; log in afterwards for tokens."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "register"

    @extend_schema(
        request=RegisterSerializer, responses={201: UserSerializer}, tags=["auth"]
    )
    def post(self, request: Request) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user = services.user_register(**serializer.validated_data)
        except IntegrityError:
            # Lost a race against a concurrent registration of the same name.
            raise ValidationError(
                {"username": ["A user with that username or email already exists."]}
            ) from None
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class LoginView(AnonymousAuthView):
    """Exchanges a username and password for an access and a refresh token.

    Send the access token as `Authorization: Bearer <access_token>`.
    """

    throttle_classes = [LoginRateThrottle, LoginAddressRateThrottle]

    @extend_schema(
        request=LoginSerializer,
        responses={
            200: TokenPairSerializer,
            401: OpenApiResponse(description="Bad credentials."),
        },
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # ModelBackend refuses inactive users, so they get the same answer.
        user = authenticate(request._request, **serializer.validated_data)
        if user is None:
            raise AuthenticationFailed(
                "No active account found with the given credentials.",
                code="invalid_credentials",
            )
        return Response(services.token_pair_for(user))


class RefreshView(AnonymousAuthView):
    """Exchanges a refresh token for a new token pair; the old refresh token ends."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "refresh"

    @extend_schema(
        request=RefreshTokenSerializer,
        responses={
            200: TokenPairSerializer,
            401: OpenApiResponse(description="Token refused."),
        },
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            pair = services.token_refresh(serializer.validated_data["refresh_token"])
        except services.TokenRejected as exc:
            raise AuthenticationFailed(str(exc), code="token_not_valid") from None
        return Response(pair)


class LogoutView(APIView):
    """Ends the given refresh token or, with `all: true`, every token, browser
    session and open websocket of the user."""

    parser_classes = AUTH_PARSERS

    @extend_schema(
        request=LogoutSerializer,
        responses={204: None, 401: OpenApiResponse(description="Token refused.")},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        serializer = LogoutSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data["all"]:
            # The refresh token, if sent, is among the tokens this ends.
            services.user_logout_everywhere(user=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        try:
            services.token_revoke(
                serializer.validated_data["refresh_token"], user=request.user
            )
        except services.TokenRejected as exc:
            raise AuthenticationFailed(str(exc), code="token_not_valid") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class WsTicketView(APIView):
    """A single-use ticket that opens one websocket within 30 seconds, so the
    access token need not travel in a URL (where logs and proxies keep it)."""

    @extend_schema(request=None, responses={200: WsTicketSerializer}, tags=["auth"])
    def post(self, request: Request) -> Response:
        payload = getattr(request.auth, "payload", None)
        if payload is not None:
            # Bought with a token: the socket lives no longer than that token.
            issued_at = services.token_issued_at(payload)
            expires_at = float(payload["exp"])
        else:
            # Bought with the browser session, which holds until logout.
            issued_at, expires_at = time.time(), None
        ticket = services.ws_ticket_issue(
            user=request.user, issued_at=issued_at, expires_at=expires_at
        )
        return Response(
            WsTicketSerializer(
                {"ticket": ticket, "expires_in": services.WS_TICKET_SECONDS}
            ).data
        )


class MeView(APIView):
    @extend_schema(responses={200: UserSerializer}, tags=["auth"])
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user).data)


@extend_schema(tags=["secrets"])
class SecretViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your secrets, for tool headers written as `{"secret": "<name>"}`.

    A value goes in once and is never answered again: not here, nor anywhere.
    """

    serializer_class = SecretSerializer
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Secret.objects.none()
        return Secret.objects.filter(owner=self.request.user)

    def perform_create(self, serializer: SecretSerializer) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = secrets.secret_create(
                owner=self.request.user, name=data["name"], value=data["value"]
            )
        except secrets.SecretNameError as exc:
            raise ValidationError({"name": [str(exc)]}) from None
