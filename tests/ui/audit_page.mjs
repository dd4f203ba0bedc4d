// Sign in to /ui/audit with an audit key, filter by status, open a record,
// and keep screenshots. Usage: node audit_page.mjs BASE_URL KEY OUT_DIR
import { chromium } from "playwright-core";

const [base, key, outDir] = process.argv.slice(2);
const fail = (msg) => {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
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
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  if (!page.url().includes("/ui/audit")) fail(`sign-in did not lead to the log: ${page.url()}`);
  const rows = await page.locator("tbody tr").count();
  if (rows < 2) fail(`expected executions in the table, found ${rows} rows`);
  await page.screenshot({ path: `${outDir}/audit-list.png`, fullPage: true });

  // Filter by status.
  await page.selectOption("select[name=status]", "runtime_error");
  await Promise.all([page.waitForNavigation(), page.click("form.filters button[type=submit]")]);
  const statuses = await page.locator("tbody td.status").allTextContents();
  if (statuses.length === 0) fail("no runtime_error rows after filtering");
  if (statuses.some((s) => s.trim() !== "runtime_error")) fail(`filter leaked: ${statuses}`);
  await page.screenshot({ path: `${outDir}/audit-filtered.png`, fullPage: true });

  // Open a record.
  await Promise.all([page.waitForNavigation(), page.locator("tbody a").first().click()]);
  const heading = await page.locator("h1").textContent();
  if (!heading.startsWith("Execution ")) fail(`detail heading: ${heading}`);
  const body = await page.locator("body").textContent();
  for (const want of ["ZeroDivisionError", "SELECT 1 AS ui_probe", "def classify", "hash"]) {
    if (!body.includes(want)) fail(`detail page lacks ${want}`);
  }
  await page.screenshot({ path: `${outDir}/audit-detail.png`, fullPage: true });
  console.log("ok");
} finally {
  await browser.close();
}
