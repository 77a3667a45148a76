/* LeadFlow: a little progressive enhancement. Every page works without this file. */
(function () {
  "use strict";

  // Ask before destructive posts: <form data-confirm="Delete this rule?">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  // Rule form: show the fields of the chosen kind only (data-kinds lists the kinds a
  // fieldset belongs to). Disabled fieldsets are not submitted.
  function setupRuleForm(form) {
    var kind = form.querySelector("select[name=kind]");
    if (!kind) return;
    var sections = form.querySelectorAll("[data-kinds]");
    var labels = form.querySelectorAll("[data-label-fit]");
    function apply() {
      sections.forEach(function (element) {
        var off = element.dataset.kinds.split(" ").indexOf(kind.value) === -1;
        element.hidden = off;
        element.disabled = off;
      });
      labels.forEach(function (element) {
        var key = "label" + kind.value.charAt(0).toUpperCase() + kind.value.slice(1);
        element.textContent = element.dataset[key] || element.dataset.labelFit;
      });
    }
    kind.addEventListener("change", apply);
    apply();
  }
  document.querySelectorAll("form[data-rule-form]").forEach(setupRuleForm);

  // Rescore progress: poll the run's JSON and update the page; reload when it ends.
  function setupPoll(element) {
    var url = element.dataset.pollUrl;
    var bar = element.querySelector("progress");
    function field(name) {
      return element.querySelector("[data-field=" + name + "]");
    }
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error(response.status);
          return response.json();
        })
        .then(function (run) {
          if (bar) bar.value = run.percent;
          var map = { percent: run.percent + "%", done: run.done, total: run.total, state: run.state };
          Object.keys(map).forEach(function (key) {
            var target = field(key);
            if (target) target.textContent = map[key];
          });
          if (run.state === "done" || run.state === "failed") {
            window.location.reload();
          } else {
            window.setTimeout(tick, 1000);
          }
        })
        .catch(function () {
          window.setTimeout(tick, 3000);
        });
    }
    window.setTimeout(tick, 500);
  }
  document.querySelectorAll("[data-poll-url]").forEach(setupPoll);

  // Filters: changing the sort applies it at once.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) select.form.requestSubmit();
    });
  });
})();
