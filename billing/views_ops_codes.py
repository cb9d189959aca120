"""The operator's redemption code batches, /ops/codes/: create a batch, list batches (codes,
redeemed, voided, value, who and when), void a batch.

The codes of a new batch exist only in the response to the POST that made them (no-store, as every
operator page): never in a session, a cookie, a message or a redirect, and never shown again; the
same POST may ask for them as a text file instead (`download`). Writes go through billing.credits
(code_batch_create, code_batch_void), which write the audit log.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import operator_page
from accounts.audit import Actor
from billing.credits import code_batch_create, code_batch_void, usd_text
from billing.forms_ops_codes import CodeBatchForm
from billing.selectors import BadCursor, code_batches_page


def _list(request: HttpRequest, form: CodeBatchForm, *, status: int = 200) -> HttpResponse:
    try:
        page = code_batches_page(cursor=request.GET.get("cursor", ""))
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    context = {"form": form, "page": page, "first_page": not request.GET.get("cursor")}
    return render(request, "billing/ops/codes.html", context, status=status)


@operator_page
@require_http_methods(["GET", "POST"])
def codes(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _list(request, CodeBatchForm())
    form = CodeBatchForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            created = code_batch_create(
                usd=data["amount"],
                count=data["count"],
                expires_at=data["expires_at"],
                actor=Actor.console(request.user),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            text = "".join(f"{code}\n" for code in created.codes)
            if "download" in request.POST:
                response = HttpResponse(text, content_type="text/plain; charset=utf-8")
                response["Content-Disposition"] = f'attachment; filename="codes-{created.batch}.txt"'
                return response
            context = {
                "batch": created.batch,
                "codes": created.codes,
                "codes_text": text,
                "amount": usd_text(data["amount"]),
                "expires_at": data["expires_at"],
            }
            return render(request, "billing/ops/codes_created.html", context)
    return _list(request, form, status=400)


@operator_page
@require_POST
def batch_void(request: HttpRequest, batch: str) -> HttpResponse:
    try:
        voided = code_batch_void(batch=batch, actor=Actor.console(request.user))
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=404, content_type="text/plain")
    if voided:
        messages.success(
            request, f"Voided batch {batch}: its {voided} unredeemed code(s) can no longer be redeemed."
        )
    else:
        messages.info(request, f"Batch {batch} has no code left to void.")
    return redirect("billing_ops:codes")
