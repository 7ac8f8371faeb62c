// Staff workspace: keyboard shortcuts, ticking tickets for bulk actions, canned replies. No inline script (CSP).
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
    if (form) { form.submit(); return true; }
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
      if (canned.value) { document.getElementById('reply-body').value = canned.value; }
    });
  }
}());
