// Sign in to /ui/audit with an audit key; read the list (error and SQL at a
// glance, a count), search SQL and code, page older and newer, filter by
// status, open a record (signal name, other runs of its code), export, look
// at it on a phone-sized screen, sign out; keep screenshots.
// Usage: node audit_page.mjs BASE_URL KEY OUT_DIR PROBE
// PROBE is a word that only the test's own probe requests contain.
import { chromium } from "playwright-core";

const [base, key, outDir, probe] = process.argv.slice(2);
const fail = (msg) => {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
};
const go = async (page, action) => {
  await Promise.all([page.waitForNavigation(), action()]);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });

  // Without a session the page sends us to the sign-in form.
  await page.goto(`${base}/ui/audit`);
  if (!page.url().includes("/ui/login")) fail(`expected the sign-in page, got ${page.url()}`);
  await page.fill("input[name=key]", key);
  await go(page, () => page.click("button[type=submit]"));
  if (!page.url().includes("/ui/audit")) fail(`sign-in did not lead to the log: ${page.url()}`);
  const rows = await page.locator("tbody tr").count();
  if (rows < 2) fail(`expected executions in the table, found ${rows} rows`);
  const count = await page.locator(".count").textContent();
  if (!/\d+ executions match · page 1 of \d+/.test(count)) fail(`count line: ${count}`);
  await page.screenshot({ path: `${outDir}/audit-list.png`, fullPage: true });

  // Search the SQL and code: only the probe's runs, each with its error and SQL.
  await page.fill("input[name=q]", probe);
  await go(page, () => page.click("form.filters button[type=submit]"));
  const found = await page.locator("tbody tr").allTextContents();
  if (found.length < 40) fail(`search found ${found.length} rows`);
  if (found.some((t) => !t.includes(probe))) fail(`search leaked: ${found[0]}`);
  if (!found.some((t) => t.includes("ZeroDivisionError: division by zero"))) fail("no error column");
  await page.screenshot({ path: `${outDir}/audit-search.png`, fullPage: true });

  // Older, then newer again: the same first row.
  const first = await page.locator("tbody tr a").first().textContent();
  await go(page, () => page.click("text=Older →"));
  if (!(await page.locator(".count").textContent()).includes("page 2 of")) fail("not on page 2");
  const second = await page.locator("tbody tr a").first().textContent();
  if (second === first) fail("page 2 shows page 1");
  await go(page, () => page.click("text=← Newer"));
  if ((await page.locator("tbody tr a").first().textContent()) !== first) fail("newer did not come back");

  // Filter by status as well.
  await page.selectOption("select[name=status]", "runtime_error");
  await go(page, () => page.click("form.filters button[type=submit]"));
  const statuses = await page.locator("tbody td.status").allTextContents();
  if (statuses.length === 0) fail("no runtime_error rows after filtering");
  if (statuses.some((s) => s.trim() !== "runtime_error")) fail(`filter leaked: ${statuses}`);
  await page.screenshot({ path: `${outDir}/audit-filtered.png`, fullPage: true });

  // Export what the filters select.
  const href = await page.locator("text=Export").getAttribute("href");
  const exported = await page.request.get(new URL(href, page.url()).toString());
  const lines = (await exported.text()).trim().split("\n");
  if (exported.headers()["content-type"] !== "application/x-ndjson") fail("export type");
  if (lines.some((l) => JSON.parse(l).status !== "runtime_error")) fail("export ignores the filter");

  // A record: its signal by name, the other runs of its code.
  await page.fill("input[name=q]", `${probe} signal`);
  await page.selectOption("select[name=status]", "");
  await go(page, () => page.click("form.filters button[type=submit]"));
  await go(page, () => page.locator("tbody a").first().click());
  const body = await page.locator("body").textContent();
  for (const want of ["SIGSEGV", "run(s) of this code", "def classify", "hash"]) {
    if (!body.includes(want)) fail(`detail page lacks ${want}`);
  }
  await page.screenshot({ path: `${outDir}/audit-detail.png`, fullPage: true });
  await go(page, () => page.click("a.same-code"));
  if (!page.url().includes("code_sha256=")) fail("same-code link");

  // A phone-sized screen: no sideways scrolling of the page itself.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/ui/audit`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 2) fail(`the page scrolls sideways by ${overflow}px on a narrow screen`);
  await page.screenshot({ path: `${outDir}/audit-narrow.png` });

  // Sign out: the log needs signing in again.
  await go(page, () => page.click("text=Sign out"));
  await page.goto(`${base}/ui/audit`);
  if (!page.url().includes("/ui/login")) fail(`still signed in after signing out: ${page.url()}`);
  console.log("ok");
} finally {
  await browser.close();
}
