"""The flash-sale contract's endpoints that `stampede storm` drives.

Plain Django function views returning JSON; no Django REST framework (its
serializers would only add per-request cost to the comparison). Every view
is csrf_exempt: this is a JSON API, see README.md.
"""
import datetime
import hmac
import json
import re
from functools import wraps

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .models import Order, Product

MAX_USERS_PER_CALL = 10_000
# Django's username rule (UnicodeUsernameValidator): letters, digits, @.+-_.
USERNAME = re.compile(r"^[\w.@+-]{1,150}\Z")
# A sku: printable ASCII without spaces or slashes (it is a path segment).
SKU = re.compile(r"^[!-.0-~]{1,64}\Z")


# ---------------------------------------------------------------- helpers


def json_response(body, status=200):
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def error(status, code, message):
    return json_response({"error": code, "message": message}, status=status)


class BadBody(Exception):
    """A request body the view cannot take; carries the answer."""

    def __init__(self, response):
        super().__init__()
        self.response = response


def read_json(request):
    """The body as a JSON object; BadBody otherwise.

    The Content-Type must be application/json: besides being the contract,
    it is what keeps these csrf_exempt views out of reach of cross-site
    form posts (a browser cannot send it cross-site without a CORS
    preflight, which this server never grants). See README.md.
    """
    if request.content_type != "application/json":
        raise BadBody(
            error(415, "unsupported_media_type", "send Content-Type: application/json")
        )
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise BadBody(error(400, "invalid", "the body must be a JSON object"))
    return body


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def rfc3339(moment):
    text = moment.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def product_json(product):
    return {
        "sku": product.sku,
        "name": product.name,
        "price_cents": product.price_cents,
        "stock_left": product.stock_left,
        "sold_out": product.stock_left <= 0,
        "per_user_limit": product.per_user_limit,
        "sale_starts_at": rfc3339(product.sale_starts_at),
    }


def order_json(order_id, sku, quantity, status, created_at, expires_at):
    return {
        "order_id": str(order_id),
        "sku": sku,
        "quantity": quantity,
        "status": status,
        "created_at": rfc3339(created_at),
        "expires_at": rfc3339(expires_at),
    }


def methods(*allowed):
    """Answers other methods with a contract-style 405."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                response = error(405, "method_not_allowed", f"use {' or '.join(allowed)}")
                response["Allow"] = ", ".join(allowed)
                return response
            try:
                return view(request, *args, **kwargs)
            except BadBody as bad:
                return bad.response

        return csrf_exempt(wrapper)

    return decorate


def admin_only(view):
    """`Authorization: Bearer <DJANGO_ADMIN_TOKEN>`, compared in constant time."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        expected = settings.ADMIN_TOKEN.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            return error(401, "unauthorized", "admin token required")
        return view(request, *args, **kwargs)

    return wrapper


def session_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return error(401, "unauthorized", "log in first")
        return view(request, *args, **kwargs)

    return wrapper


# ---------------------------------------------------------------- health


@methods("GET", "HEAD")
def healthz(request):
    # Cheap on purpose: touches neither PostgreSQL nor Redis.
    return HttpResponse(b"ok\n", content_type="text/plain")


# ---------------------------------------------------------------- admin


@methods("POST")
@admin_only
def admin_users(request):
    users = read_json(request).get("users")
    if not isinstance(users, list) or not 1 <= len(users) <= MAX_USERS_PER_CALL:
        return error(400, "invalid", f"users must be a list of 1 to {MAX_USERS_PER_CALL}")
    names = []
    for user in users:
        if not isinstance(user, dict):
            return error(400, "invalid", "each user is {username, password}")
        name, password = user.get("username"), user.get("password")
        if not isinstance(name, str) or not USERNAME.match(name):
            return error(400, "invalid", "a username is 1 to 150 letters, digits and @.+-_")
        if not isinstance(password, str) or not 1 <= len(password.encode()) <= 1024:
            return error(400, "invalid", "a password is 1 to 1024 bytes")
        names.append(name)
    if len(set(names)) != len(names):
        return error(400, "invalid", "a username appears twice in the call")
    # Hash outside the transaction: it is the slow part.
    new = [User(username=u["username"], password=make_password(u["password"])) for u in users]
    try:
        with transaction.atomic():
            taken = User.objects.filter(username__in=names).values_list("username", flat=True)[:1]
            if taken:
                return error(409, "exists", f"user {taken[0]} exists; nothing created")
            User.objects.bulk_create(new, batch_size=1000)
    except IntegrityError:
        # Someone created one of these names between the check and the insert.
        return error(409, "exists", "a user exists; nothing created")
    return json_response({"created": len(new)}, status=201)


@methods("POST")
@admin_only
def admin_products(request):
    body = read_json(request)
    sku, name = body.get("sku"), body.get("name")
    price, stock, limit = body.get("price_cents"), body.get("stock"), body.get("per_user_limit")
    if not isinstance(sku, str) or not SKU.match(sku):
        return error(400, "invalid", "sku: 1 to 64 printable ASCII characters, no spaces or /")
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        return error(400, "invalid", "name: 1 to 200 characters")
    if not is_int(price) or price < 0:
        return error(400, "invalid", "price_cents: an integer >= 0")
    if not is_int(stock) or not 0 <= stock <= 2**53:
        return error(400, "invalid", "stock: an integer >= 0")
    if not is_int(limit) or not 1 <= limit <= 2**53:
        return error(400, "invalid", "per_user_limit: an integer >= 1")
    starts = body.get("sale_starts_at")
    if starts is None:
        starts = timezone.now()
    else:
        try:
            starts = datetime.datetime.fromisoformat(starts)
        except (TypeError, ValueError):
            starts = None
        if starts is None or starts.tzinfo is None:
            return error(400, "invalid", "sale_starts_at: an RFC 3339 time with its offset")
    product = Product(
        sku=sku,
        name=name,
        price_cents=price,
        initial_stock=stock,
        stock_left=stock,
        per_user_limit=limit,
        sale_starts_at=starts,
    )
    try:
        with transaction.atomic():
            product.save(force_insert=True)
    except IntegrityError:
        return error(409, "exists", f"sku {sku} exists")
    return json_response(product_json(product), status=201)


@methods("GET")
@admin_only
def admin_stats(request):
    # Read from the source of truth (PostgreSQL), never from the cache.
    by_product = {}
    rows = Order.objects.values("product_id", "status").annotate(units=Sum("quantity"))
    for row in rows:
        by_product.setdefault(row["product_id"], {})[row["status"]] = row["units"]
    skus = []
    for product in Product.objects.order_by("sku"):
        units = by_product.get(product.pk, {})
        entry = {
            "sku": product.sku,
            "initial_stock": product.initial_stock,
            "stock_left": product.stock_left,
        }
        entry.update({status: units.get(status, 0) for status in Order.STATUSES})
        skus.append(entry)
    return json_response({"skus": skus})


# ---------------------------------------------------------------- sessions


@methods("POST")
def login_view(request):
    body = read_json(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return error(400, "invalid", "send {username, password}")
    # Unknown usernames cost the same hashing as wrong passwords (Django's
    # ModelBackend runs the hasher once either way).
    user = authenticate(request, username=username, password=password)
    if user is None:
        return error(401, "bad_credentials", "wrong username or password")
    login(request, user)  # issues a new session id
    return json_response({"username": user.username})


@methods("POST")
def logout_view(request):
    logout(request)
    return HttpResponse(status=204)


@methods("GET")
@session_required
def me(request):
    return json_response({"username": request.user.username})


# ---------------------------------------------------------------- products


@methods("GET")
def product_detail(request, sku):
    key = f"product:{sku}"
    body = cache.get(key)
    if body is None:
        try:
            product = Product.objects.get(sku=sku)
        except Product.DoesNotExist:
            return error(404, "not_found", f"no product {sku}")
        body = json.dumps(product_json(product)).encode()
        # The contract allows stock_left and sold_out to lag one second.
        cache.set(key, body, settings.PRODUCT_CACHE_SECONDS)
    return HttpResponse(body, content_type="application/json")


# ---------------------------------------------------------------- orders


@methods("GET", "POST")
@session_required
def orders(request):
    if request.method == "POST":
        return place_order(request)
    rows = (
        Order.objects.filter(user=request.user)
        .order_by("id")
        .values_list("id", "product__sku", "quantity", "status", "created_at", "expires_at")
    )
    return json_response({"orders": [order_json(*row) for row in rows]})


def place_order(request):
    body = read_json(request)
    sku, quantity = body.get("sku"), body.get("quantity")
    if not isinstance(sku, str) or not is_int(quantity) or quantity < 1:
        return error(400, "invalid", "send {sku, quantity >= 1}")
    now = timezone.now()

    # A plain read first, without a lock: once the sale is sold out (or has
    # not started, or the sku is unknown) the answer is final and the
    # crowd need not queue on the product row to hear it. It is read from
    # PostgreSQL, not from the cached product page, so it never refuses
    # stock that is there.
    seen = Product.objects.filter(sku=sku).values_list("id", "stock_left", "sale_starts_at")
    seen = list(seen)
    if not seen:
        return error(404, "not_found", f"no product {sku}")
    product_id, stock_left, sale_starts_at = seen[0]
    if sale_starts_at > now:
        return error(403, "not_started", f"the sale starts at {rfc3339(sale_starts_at)}")
    if stock_left < quantity:
        return error(409, "sold_out", f"{sku} is sold out")

    # The reservation itself: lock the product row, check again under the
    # lock, decrement with F(), create the order, all in one transaction.
    with transaction.atomic():
        product = (
            Product.objects.select_for_update()
            .only("id", "stock_left", "per_user_limit")
            .get(pk=product_id)
        )
        if product.stock_left < quantity:
            return error(409, "sold_out", f"{sku} is sold out")
        # A statement of its own after the lock is granted: under READ
        # COMMITTED it sees every order committed before us, including this
        # user's concurrent ones (a subquery in the locking SELECT would
        # use the snapshot taken before the lock wait).
        held = (
            Order.objects.filter(user=request.user, product_id=product_id, status__in=Order.LIVE)
            .aggregate(units=Sum("quantity"))["units"]
            or 0
        )
        if held + quantity > product.per_user_limit:
            return error(
                409,
                "limit_exceeded",
                f"at most {product.per_user_limit} per user; you hold {held}",
            )
        Product.objects.filter(pk=product_id).update(stock_left=F("stock_left") - quantity)
        now = timezone.now()
        expires_at = now + datetime.timedelta(seconds=settings.ORDER_HOLD_SECONDS)
        order = Order.objects.create(
            user=request.user,
            product_id=product_id,
            quantity=quantity,
            status=Order.RESERVED,
            created_at=now,
            expires_at=expires_at,
        )
    return json_response(
        order_json(order.pk, sku, quantity, Order.RESERVED, now, expires_at), status=201
    )


# ---------------------------------------------------------------- errors


def not_found(request, exception=None):
    return error(404, "not_found", "no such path")


def server_error(request):
    return error(500, "internal", "the server failed; see its log")
