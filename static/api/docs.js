// /api/docs/: Swagger UI (from drf-spectacular-sidecar, served from our static files) over the
// schema at /api/schema/. "Authorize" takes a personal access token (thp_...), sent as a bearer token.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.schemaUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
