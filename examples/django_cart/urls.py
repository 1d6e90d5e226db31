"""The Django cart's views: add an item, show the cart (the count cached), log in, log out."""

from __future__ import annotations

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST


def show(request: HttpRequest) -> HttpResponse:
    cart = request.session.get("cart", [])
    return JsonResponse({"cart": cart, "user": request.session.get("user"), "views": _views()})


def _views() -> int:
    cache.add("views", 0, timeout=None)
    return int(cache.incr("views"))


@require_POST
def add(request: HttpRequest, item: str) -> HttpResponse:
    request.session["cart"] = [*request.session.get("cart", []), item[:100]]
    return JsonResponse({"count": len(request.session["cart"])})


@require_POST
def login(request: HttpRequest, user: str) -> HttpResponse:
    request.session.cycle_key()  # a new session key on login, data kept
    request.session["user"] = user[:100]
    return JsonResponse({"user": user})


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return JsonResponse({})


urlpatterns = [
    path("cart", show),
    path("cart/<str:item>", add),
    path("login/<str:user>", login),
    path("logout", logout),
]
