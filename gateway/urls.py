from django.urls import path

from gateway import views

urlpatterns = [
    path("chat/completions", views.ChatCompletionsView.as_view(), name="chat-completions"),
    path("embeddings", views.EmbeddingsView.as_view(), name="embeddings"),
    path("models", views.ModelsView.as_view(), name="models"),
]
