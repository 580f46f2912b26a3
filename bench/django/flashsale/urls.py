from django.urls import path

from shop import views

urlpatterns = [
    path("healthz", views.healthz),
    path("api/v1/admin/users", views.admin_users),
    path("api/v1/admin/products", views.admin_products),
    path("api/v1/admin/stats", views.admin_stats),
    path("api/v1/login", views.login_view),
    path("api/v1/logout", views.logout_view),
    path("api/v1/me", views.me),
    path("api/v1/products/<str:sku>", views.product_detail),
    path("api/v1/orders", views.orders),
]

handler404 = "shop.views.not_found"
handler500 = "shop.views.server_error"
