from types import MethodType

from django.contrib import admin
from django.urls import reverse

# The admin index is the staff's start page: it links the dashboard from there. Its template
# extends the stock index, so the recent actions stay as they are.
admin.site.index_template = "dashboard/admin_index.html"
# No model of this app is registered: its admin URLs would sit under /admin/dashboard/, the
# dashboard's own prefix. Staff actions on a machine are shown on that machine's page.

# The index groups models by what an operator does, not by the Python app that defines them.
# (group, [(app_label, model_name, name shown)]); the name fixes plurals the models spell
# badly ("Slashs"). A model in no group lands in "Other", so a new one never disappears.
GROUPS = [
    (
        "Leases and money",
        [
            ("orders", "order", "Orders"),
            ("listings", "listing", "Listings"),
            ("payments", "chaintransaction", "Chain transactions"),
            ("payments", "chainevent", "Chain events"),
            ("payments", "stake", "Stakes"),
            ("payments", "slash", "Slashes"),
            ("payments", "reward", "Rewards"),
        ],
    ),
    (
        "Fleet",
        [
            ("providers", "machine", "Machines"),
            ("providers", "provider", "Providers"),
            ("benchmarks", "machineuptime", "Machine uptime"),
            ("providers", "registrationtoken", "Registration tokens"),
            ("providers", "agentcredential", "Agent credentials"),
        ],
    ),
    (
        "Verification",
        [
            ("benchmarks", "verdict", "Verdicts"),
            ("benchmarks", "benchmarkjob", "Benchmark jobs"),
            ("benchmarks", "benchmarksuite", "Benchmark suites"),
            ("payments", "verificationoutcome", "Verification outcomes"),
        ],
    ),
    (
        "Incidents and alerts",
        [
            ("core", "alert", "Alerts"),
            ("benchmarks", "platformincident", "Platform incidents"),
        ],
    ),
    (
        "People and access",
        [
            ("accounts", "user", "Users"),
            ("accounts", "apitoken", "API tokens"),
            ("auth", "group", "Groups"),
        ],
    ),
    (
        "Webhooks",
        [
            ("webhooks", "webhookdelivery", "Webhook deliveries"),
            ("webhooks", "webhookendpoint", "Webhook endpoints"),
        ],
    ),
    ("Chain setup", [("payments", "contractdeployment", "Contract deployments")]),
]


def grouped_app_list(self, request, app_label=None):
    if app_label is not None:
        # An app's own index page (/admin/<app>/) keeps Django's list for that app.
        return admin.AdminSite.get_app_list(self, request, app_label)
    by_key = {
        (app["app_label"], m["object_name"].lower()): m
        for app in self._build_app_dict(request).values()
        for m in app["models"]
    }
    groups = []
    for title, wanted in [*GROUPS, ("Other", [])]:
        if title == "Other":
            models = sorted(by_key.values(), key=lambda m: m["name"])
        else:
            models = []
            for app, model, name in wanted:
                entry = by_key.pop((app, model), None)
                if entry is not None:
                    models.append({**entry, "name": name})
        if models:
            slug = title.lower().replace(" ", "-")
            groups.append(
                {
                    "name": title,
                    "app_label": slug,
                    "app_url": f"{reverse('admin:index', current_app=self.name)}#{slug}",
                    "has_module_perms": True,
                    "models": models,
                }
            )
    return groups


admin.site.get_app_list = MethodType(grouped_app_list, admin.site)
