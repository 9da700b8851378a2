/* Loaded (via myst-nb's nb_ipywidgets_js in _config.yml) right before the vendored
 * @jupyter-widgets/html-manager embed-amd.js, on pages that store ipywidgets state.
 *
 * 1. embed-amd.js holds several named AMD modules; each derives its webpack public
 *    path (where its bundled fonts, Font Awesome 6 for widget icons, are fetched
 *    from) from its require.js module URL, which by default is relative to the page
 *    ("<page dir>/@jupyter-widgets/html-manager/dist/<hash>.woff2": 404). Map those
 *    module ids to the vendored folder, next to this script, so the fonts load from
 *    _static/vendor/html-manager/.
 * 2. @jupyter-widgets/base typesets widget labels with the MathJax 2 API
 *    (MathJax.Hub.Queue); the book uses MathJax 3. Give MathJax 3 a minimal
 *    Hub.Queue that forwards "Typeset" requests to MathJax.typesetPromise, instead
 *    of the TypeError a widget would otherwise raise.
 */
(function () {
  "use strict";
  var here = document.currentScript && document.currentScript.src;
  if (here) {
    var dir = new URL("vendor/html-manager/", here).href;
    window.__jupyter_widgets_assets_path__ = dir;
    if (window.requirejs && window.requirejs.config) {
      var paths = {};
      ["@jupyter-widgets/html-manager/dist/libembed-amd", "@jupyter-widgets/html-manager",
       "@jupyter-widgets/base", "@jupyter-widgets/controls",
       "@jupyter-widgets/base7", "@jupyter-widgets/controls7"].forEach(function (id) {
        paths[id] = dir + id.split("/").pop();
      });
      window.requirejs.config({ paths: paths });
    }
  }

  function installHubShim() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) return; // no MathJax 3 on this page, or a real MathJax 2
    mj.Hub = {
      Queue: function () {
        var jobs = Array.prototype.slice.call(arguments);
        mj.startup.promise.then(function () {
          jobs.forEach(function (job) {
            if (Array.isArray(job) && job[0] === "Typeset" && mj.typesetPromise) {
              var el = job[2];
              mj.typesetPromise(el ? [el] : undefined).catch(function (err) {
                console.warn("MathJax typeset of a widget failed", err);
              });
            }
          });
        });
      },
    };
  }
  // MathJax 3 is a deferred script: it has replaced window.MathJax (its config) with
  // the MathJax object by DOMContentLoaded. This listener is registered before the
  // widget manager's, so the shim is in place before any widget renders.
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", installHubShim);
  } else {
    installHubShim();
  }
  window.addEventListener("load", installHubShim);
})();
