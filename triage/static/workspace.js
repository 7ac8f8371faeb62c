// Staff workspace: keyboard shortcuts, ticking tickets for bulk actions, canned replies, confirmations,
// Undo after resolving, who else has a ticket open or is typing, and drafts kept. No inline script (CSP).
(function () {
  'use strict';
  var overlay = document.getElementById('shortcuts');
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr[data-href]'));
  var current = -1;

  function typing(event) {
    var el = event.target;
    if (!el) { return false; }
    if (el.tagName === 'INPUT') { return !/^(checkbox|radio|button|submit|reset)$/.test(el.type); }
    return el.isContentEditable || /^(TEXTAREA|SELECT)$/.test(el.tagName);
  }
  function select(index) {
    if (!rows.length) { return; }
    current = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach(function (row, i) { row.classList.toggle('selected', i === current); });
    rows[current].scrollIntoView({block: 'nearest'});
  }
  function toggleHelp(show) {
    if (!overlay) { return; }
    overlay.hidden = show === undefined ? !overlay.hidden : !show;
  }
  function submit(id) {
    var form = document.getElementById(id);
    if (form) { form.requestSubmit(); return true; }  // requestSubmit: its confirmation is asked
    return false;
  }
  function ticked() {
    return Array.prototype.slice.call(document.querySelectorAll('#bulk input[name=ticket_id]:checked'));
  }
  function bulk(op) {
    var form = document.getElementById('bulk');
    if (!form || !ticked().length) { return; }
    if (op === 'assign') {
      var me = form.querySelector('select[name=assign_value] option[data-me]');
      if (me) { me.selected = true; }
    }
    var button = form.querySelector('button[name=op][value=' + op + ']');
    if (button) { button.click(); }
  }
  function countTicked() {
    var counter = document.getElementById('ticked');
    if (counter) { counter.textContent = String(ticked().length); }
    var form = document.getElementById('bulk');
    if (form) { form.classList.toggle('has-ticked', ticked().length > 0); }
  }

  document.addEventListener('keydown', function (event) {
    if (event.key === 'Escape') { toggleHelp(false); return; }
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) { return; }
    switch (event.key) {
      case '?': toggleHelp(); break;
      case 'j': select(current + 1); break;
      case 'k': select(current < 0 ? 0 : current - 1); break;
      case 'o': case 'Enter':
        if (current >= 0) { window.location.href = rows[current].getAttribute('data-href'); } else { return; }
        break;
      case 'x':
        if (current >= 0) {
          var box = rows[current].querySelector('input[type=checkbox]');
          if (box) { box.checked = !box.checked; countTicked(); }
        }
        break;
      case 'r': {
        var reply = document.getElementById('reply-body');
        if (!reply) { return; }
        reply.focus();
        break;
      }
      case 'a': if (!submit('claim-form')) { bulk('assign'); } break;
      case 'e': if (!submit('resolve-form')) { bulk('resolve'); } break;
      case '/': {
        var search = document.querySelector('header input[name=q]');
        if (!search) { return; }
        search.focus();
        break;
      }
      default: return;
    }
    event.preventDefault();
  });

  document.querySelectorAll('[data-close-shortcuts]').forEach(function (b) {
    b.addEventListener('click', function () { toggleHelp(false); });
  });
  var all = document.getElementById('tick-all');
  if (all) {
    all.addEventListener('change', function () {
      document.querySelectorAll('#bulk input[name=ticket_id]').forEach(function (box) { box.checked = all.checked; });
      countTicked();
    });
  }
  document.querySelectorAll('#bulk input[name=ticket_id]').forEach(function (box) {
    box.addEventListener('change', countTicked);
  });
  var canned = document.getElementById('canned');
  if (canned) {
    canned.addEventListener('change', function () {
      var chosen = canned.options[canned.selectedIndex];
      var macroId = document.getElementById('macro-id');
      if (macroId) { macroId.value = chosen ? (chosen.getAttribute('data-macro-id') || '') : ''; }
      if (canned.value) { document.getElementById('reply-body').value = canned.value; }
    });
  }

  // Destructive or surprising actions ask first (Deactivate, macro Delete, taking a colleague's ticket).
  document.querySelectorAll('form[data-confirm]').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      if (!window.confirm(form.getAttribute('data-confirm'))) { event.preventDefault(); }
    });
  });

  // After a resolve: Undo for a few seconds, then the offer goes.
  var undo = document.getElementById('undo');
  if (undo) {
    var left = parseInt(undo.getAttribute('data-seconds'), 10) || 10;
    var count = document.getElementById('undo-count');
    var timer = window.setInterval(function () {
      left -= 1;
      if (count) { count.textContent = String(left); }
      if (left <= 0) { window.clearInterval(timer); undo.remove(); }
    }, 1000);
  }

  // The reply box keeps its text in this tab until it is sent (a reload or a slip of the mouse loses nothing).
  var reply = document.getElementById('reply-body');
  var draftKey = reply && reply.getAttribute('data-draft-key');
  function storage() { try { return window.sessionStorage; } catch (e) { return null; } }
  if (reply && draftKey && storage()) {
    if (reply.value) { storage().setItem(draftKey, reply.value); }  // sent back by a refused action
    else if (storage().getItem(draftKey)) { reply.value = storage().getItem(draftKey); }
    reply.addEventListener('input', function () { storage().setItem(draftKey, reply.value); });
    reply.form.addEventListener('submit', function () { storage().removeItem(draftKey); });
  }

  // Who else has this ticket open, and who is typing: reported and read every few seconds.
  var presence = document.getElementById('presence');
  if (presence) {
    var url = presence.getAttribute('data-url');
    var csrf = presence.getAttribute('data-csrf');
    var version = parseInt(presence.getAttribute('data-version'), 10) || 0;
    var typedAt = 0;
    var lastReport = 0;
    var pending = false;
    var viewers = document.getElementById('viewers');
    var newer = document.getElementById('newer-reply');
    var post = function (body, keepalive) {
      return fetch(url, {
        method: 'POST', credentials: 'same-origin', keepalive: !!keepalive,
        headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrf},
        body: JSON.stringify(body)
      });
    };
    var show = function (data) {
      viewers.textContent = '';
      (data.viewers || []).forEach(function (v) {
        var pill = document.createElement('span');
        pill.className = 'pill viewer' + (v.typing ? ' typing' : '');
        pill.textContent = v.name + (v.typing ? ' is typing a reply' : ' has this open');
        viewers.appendChild(pill);
        viewers.appendChild(document.createTextNode(' '));
      });
      if (newer && data.reply_version > version) { newer.hidden = false; }
    };
    var report = function () {
      if (pending) { return; }
      pending = true;
      lastReport = Date.now();
      post({typing: Date.now() - typedAt < 5000}).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(function (data) { if (data) { show(data); } }).catch(function () {}).then(function () {
        pending = false;
      });
    };
    if (reply) {
      reply.addEventListener('input', function () {
        var first = Date.now() - typedAt >= 5000;
        typedAt = Date.now();
        if (first || Date.now() - lastReport > 2000) { report(); }
      });
    }
    report();
    window.setInterval(report, parseInt(presence.getAttribute('data-interval'), 10) || 3000);
    window.addEventListener('pagehide', function () { post({leaving: true}, true).catch(function () {}); });
  }
  // Every handler above is bound: keys pressed from now on are shortcuts (browser tests wait for this).
  document.documentElement.setAttribute('data-workspace', 'ready');
}());
