import django_filters

from marketplace.orders.models import Order


class OrderFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Order.State.choices)

    class Meta:
        model = Order
        fields: list[str] = []
