// Renders the OpenAPI document with the vendored Swagger UI (loaded from /static, so the CSP stays strict).
(function () {
  'use strict';
  var node = document.getElementById('swagger-ui');
  if (!node || typeof window.SwaggerUIBundle !== 'function') { return; }
  window.SwaggerUIBundle({
    url: node.getAttribute('data-spec'),
    domNode: node,
    deepLinking: false,
    tryItOutEnabled: false,
    supportedSubmitMethods: [],
    validatorUrl: null
  });
}());
