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

  // One format for every span of time, as leadflow_ui's duration filter says it (keep the
  // two in step): "under a minute", "42 min", "5 h 20 min", "26 h", "3 days 4 h", "12 days".
  function formatDuration(milliseconds) {
    var minutes = Math.floor(Math.abs(milliseconds) / 60000);
    if (minutes < 1) return "under a minute";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours === 0) return minutes + " min";
    if (hours < 10) return minutes ? hours + " h " + minutes + " min" : hours + " h";
    if (hours < 48) return hours + " h";
    var days = Math.floor(hours / 24);
    hours = hours % 24;
    return days < 10 && hours ? days + " days " + hours + " h" : days + " days";
  }

  function span(className, text) {
    var element = document.createElement("span");
    element.className = className;
    element.textContent = text;
    return element;
  }

  // The SLA countdown ticks: <span data-sla-due="<epoch s>" data-sla-now="<epoch s>">, as
  // templates/sales/partials/sla.html renders it (data-sla-style="text": the words only).
  // Time runs from the server's clock at rendering, so a wrong clock on this computer does
  // not change what the page says; without this script the rendered text stays as it was.
  function renderSla(element, elapsed) {
    var due = Number(element.dataset.slaDue) * 1000;
    var now = Number(element.dataset.slaNow) * 1000 + elapsed;
    if (!due || !now) return;
    var left = due - now;
    var overdue = left <= 0;
    var text = overdue ? "overdue by " + formatDuration(left) : "due in " + formatDuration(left);
    if (element.dataset.slaShown === text) return;
    element.dataset.slaShown = text;
    if (element.dataset.slaStyle === "text") {
      element.textContent = text;
      element.classList.toggle("text-danger", overdue);
      element.classList.toggle("muted", !overdue);
      return;
    }
    var soon = !overdue && left <= Number(element.dataset.slaSoon || 0) * 1000;
    if (overdue) {
      element.replaceChildren(
        span("badge sla-overdue", "Overdue"),
        document.createTextNode(" "),
        span("sla-text overdue", "by " + formatDuration(left))
      );
      var row = element.closest("tr, .claim");
      if (row) row.classList.add("is-overdue");
    } else {
      element.replaceChildren(span("sla-text" + (soon ? " soon" : ""), text));
    }
  }
  var clocks = document.querySelectorAll("[data-sla-due]");
  if (clocks.length) {
    var loaded = Date.now();
    var tick = function () {
      var elapsed = Date.now() - loaded;
      clocks.forEach(function (element) {
        renderSla(element, elapsed);
      });
    };
    tick();
    window.setInterval(tick, 15000);
  }

  // Dates in the reader's own time zone: <time datetime="<ISO 8601>" data-local-time>
  // rendered by the server in its zone (named in the text) is rewritten in the browser's.
  var localFormat = new Intl.DateTimeFormat("en-US", {
    month: "short",
    day: "numeric",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
  });
  document.querySelectorAll("time[data-local-time]").forEach(function (element) {
    var moment = new Date(element.getAttribute("datetime"));
    if (isNaN(moment.getTime())) return;
    element.title = element.textContent.trim();
    element.textContent = localFormat.format(moment);
  });

  // Filters: changing the sort applies it at once.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) select.form.requestSubmit();
    });
  });

  // Leads list: "select all on this page" ticks every row's box of the bulk form
  // (<input data-select-all="leads">), and follows the rows when they are ticked one by one.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    var rows = document.querySelectorAll('input[type=checkbox][name="' + all.dataset.selectAll + '"]');
    function follow() {
      var ticked = Array.prototype.filter.call(rows, function (row) { return row.checked; }).length;
      all.checked = ticked > 0 && ticked === rows.length;
      all.indeterminate = ticked > 0 && ticked < rows.length;
    }
    all.addEventListener("change", function () {
      rows.forEach(function (row) { row.checked = all.checked; });
    });
    rows.forEach(function (row) { row.addEventListener("change", follow); });
    follow();
  });

  // A table that scrolls sideways (a wide table on a phone) can be scrolled from the
  // keyboard: it becomes a focusable region named by its section's heading (WCAG 2.1.1).
  function markScrollables() {
    document.querySelectorAll(".table-wrap").forEach(function (wrap) {
      var scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
      if (scrolls && !wrap.hasAttribute("tabindex")) {
        var section = wrap.closest("section");
        var heading = section && section.querySelector("h2, h3");
        wrap.setAttribute("tabindex", "0");
        wrap.setAttribute("role", "region");
        wrap.setAttribute("aria-label", (heading ? heading.textContent.trim() : "Table") + " (scrolls sideways)");
      } else if (!scrolls && wrap.getAttribute("role") === "region") {
        wrap.removeAttribute("tabindex");
        wrap.removeAttribute("role");
        wrap.removeAttribute("aria-label");
      }
    });
  }
  markScrollables();
  window.addEventListener("resize", markScrollables);
  // A part of the page loaded later (the backtest card) announces itself so its tables are marked too.
  document.addEventListener("leadflow:loaded", markScrollables);
})();

// The what-if preview's backtest (issue 14): replaying the past handoffs may take seconds,
// so its card loads in the background; without JavaScript its link opens the backtest page.
(function () {
  document.querySelectorAll("[data-backtest-url]").forEach(function (card) {
    var body = card.querySelector("[data-backtest-body]");
    if (!body || !window.fetch) return;
    body.setAttribute("aria-busy", "true");
    window
      .fetch(card.getAttribute("data-backtest-url"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) {
        body.innerHTML = html;
        document.dispatchEvent(new Event("leadflow:loaded"));
      })
      .catch(function () {
        var note = document.createElement("p");
        note.className = "muted small";
        note.textContent = "The backtest could not be loaded here: use the link above.";
        body.appendChild(note);
      })
      .finally(function () {
        body.removeAttribute("aria-busy");
      });
  });
})();
