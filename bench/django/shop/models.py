from django.conf import settings
from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price_cents = models.BigIntegerField()
    initial_stock = models.BigIntegerField()
    stock_left = models.BigIntegerField()
    per_user_limit = models.BigIntegerField()
    sale_starts_at = models.DateTimeField()

    class Meta:
        constraints = [
            # The last line of defence against overselling: even a buggy
            # view cannot take stock below zero.
            models.CheckConstraint(
                condition=models.Q(stock_left__gte=0), name="stock_left_not_negative"
            ),
        ]


class Order(models.Model):
    RESERVED = "reserved"
    PAYING = "paying"
    PAID = "paid"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    PAYMENT_FAILED = "payment_failed"
    STATUSES = [RESERVED, PAYING, PAID, CONFIRMED, EXPIRED, CANCELLED, PAYMENT_FAILED]
    # Statuses whose units are held: they count against stock and the limit.
    LIVE = [RESERVED, PAYING, PAID, CONFIRMED]

    # Indexed by the composite index below, which starts with the user.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, db_index=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=[(s, s) for s in STATUSES])
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The per-user limit check: this user's live units of this product.
            models.Index(fields=["user", "product", "status"], name="order_user_product_status"),
        ]
