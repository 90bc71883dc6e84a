import { describe, expect, it } from 'vitest';
import { securityPane } from '../../tui/panes/security-pane.js';
import { initialUiState } from '../../tui/ui-state.js';
import { plain } from '../../tui/text.js';
import type { AnomalyNotice } from '../../machine/debug/protocol.js';

const anomaly = (id: number, description: string, severity: AnomalyNotice['severity'] = 'high'): AnomalyNotice => ({
  id,
  vm: 'gateway-hostile',
  behaviour: 'port-scan',
  metric: 'ioPorts',
  description,
  observed: ['0x60'],
  expected: '19 values in the profile',
  window: { fromMs: 3600, toMs: 3700 },
  severity,
  rip: '0xffffffff80112f41',
  atMs: 3700.5,
  episode: { lastMs: 3700.5, events: 1 },
});

describe('Security pane', () => {
  it('lists anomalies with VM, severity, description and RIP, newest last, following the tail', () => {
    const ui = initialUiState();
    ui.security.anomalies.push(anomaly(1, 'I/O port scan: 62 ports {outside} the profile'), anomaly(2, 'COM1 flood: 8306 bytes', 'medium'));
    const c = securityPane.render(null, ui, 60);
    expect(c.title).toBe('Security (2 anomalies)');
    expect(c.follow).toBe('tail');
    const text = c.lines.map(plain);
    expect(text[0]).toBe('#1 3701ms gateway-hostile high');
    expect(text[1]).toBe('  I/O port scan: 62 ports {outside} the profile');
    expect(text[2]).toBe('  ioPorts rip 0xffffffff80112f41');
    expect(text[4]).toBe('  COM1 flood: 8306 bytes');
  });

  it('keeps the selected anomaly in view and marks it', () => {
    const ui = initialUiState();
    for (let i = 1; i <= 10; i++) ui.security.anomalies.push(anomaly(i, `anomaly ${i}`));
    ui.security.selected = 4;
    const c = securityPane.render(null, ui, 60);
    expect(c.follow).toBe('anchor');
    expect(c.anchor).toBe(12);
    expect(c.lines[12]).toContain('{inverse}#5 ');
    expect(c.lines.filter((l) => l.includes('{inverse}'))).toHaveLength(1);
  });

  it('says why when the machine serves no behaviour profiles, and when there is nothing yet', () => {
    const ui = initialUiState();
    expect(securityPane.render(null, ui, 60).lines.map(plain)).toEqual(['no anomalies']);
    ui.security.unavailable = 'behaviour profiles need a machine running VMs under the hypervisor (firmament run)';
    expect(plain(securityPane.render(null, ui, 60).lines[0]!)).toContain('behaviour profiles need');
  });
});
