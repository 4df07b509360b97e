from django.contrib import admin

# The admin index is the staff's start page: it links the dashboard from there. Its template
# extends the stock index, so the app list and recent actions stay as they are.
admin.site.index_template = "dashboard/admin_index.html"
