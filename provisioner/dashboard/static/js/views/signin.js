// Sign in with an API key. The key is checked against the service before it is kept (in
// sessionStorage: it lasts as long as the tab and never reaches disk or other tabs).

import { ApiError, request, session } from "../api.js";
import { h } from "../dom.js";

export function mount(main, ctx) {
  ctx.title("Sign in");
  const message = h("div", { class: "signin-message", role: "alert" });
  if (ctx.message) message.append(h("p", { class: "notice notice-warn" }, ctx.message));
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-hint",
  });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");

  async function submit(event) {
    event.preventDefault();
    const key = input.value.trim();
    message.replaceChildren();
    if (!key) {
      message.append(h("p", { class: "notice notice-error" }, "Enter an API key."));
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Checking…";
    try {
      await request("GET", "/environments", { query: { limit: 1 }, key, signal: ctx.signal });
      session.signIn(key);
      const next = ctx.query.get("next");
      ctx.navigate(next && next.startsWith("/") && !next.startsWith("/signin") ? next : "/environments");
    } catch (error) {
      if (error.name === "AbortError") return;
      const text =
        error instanceof ApiError && error.status === 401
          ? "That API key was not accepted (invalid or revoked)."
          : error.message;
      message.append(h("p", { class: "notice notice-error" }, text));
      input.select();
      input.focus();
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  }

  main.append(
    h(
      "section",
      { class: "signin card", "aria-labelledby": "signin-heading" },
      h("h1", { id: "signin-heading", tabindex: "-1" }, "Sign in"),
      h("p", {}, "Use an API key issued by the provisioner: an admin key, or a key for one tenant."),
      message,
      h(
        "form",
        { on: { submit }, novalidate: true },
        h("label", { for: "api-key" }, "API key"),
        input,
        h(
          "p",
          { class: "hint", id: "api-key-hint" },
          "Kept only for this browser tab. A service started without PROVISIONER_ADMIN_KEY writes its admin key to .provisioner/admin.key.",
        ),
        button,
      ),
    ),
  );
  input.focus();
}
