/* Browser notifications: the buttons of the notification settings page
   (templates/notify/settings.html). Registers /sw.js, subscribes this browser to Web Push with
   the server's VAPID key and hands the subscription to notify/views.py. A plain script loaded
   with <script defer>; it does nothing unless <body data-push-enabled="true">. */
(function () {
  "use strict";

  const enable = document.getElementById("enable-push");
  const disable = document.getElementById("disable-push");
  const state = document.getElementById("push-state");
  if (!enable || document.body.dataset.pushEnabled !== "true") return;

  function say(text) {
    if (state) state.textContent = text;
  }

  function show(on, text) {
    enable.hidden = on;
    if (disable) disable.hidden = !on;
    say(text);
  }

  if (!("serviceWorker" in navigator && "PushManager" in window && "Notification" in window)) {
    say("This browser cannot show notifications from AgentHub.");
    return;
  }

  function csrfToken() {
    const cookie = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (cookie) return decodeURIComponent(cookie[1]);
    const meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) return meta.content;
    const input = document.querySelector('input[name="csrfmiddlewaretoken"]');
    return input ? input.value : "";
  }

  function urlBase64ToUint8Array(value) {
    const padded = value + "=".repeat((4 - (value.length % 4)) % 4);
    const raw = window.atob(padded.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(raw, (char) => char.charCodeAt(0));
  }

  function sameKey(buffer, key) {
    if (!buffer) return false;
    const current = new Uint8Array(buffer);
    return current.length === key.length && current.every((byte, i) => byte === key[i]);
  }

  async function request(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.ok) return response;
    let detail = response.status + " " + response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch (error) {
      // Not JSON (Django's CSRF failure page): keep the status line.
    }
    const failure = new Error(detail);
    failure.status = response.status;
    throw failure;
  }

  async function serverKey() {
    const response = await request("GET", enable.dataset.keyUrl);
    return urlBase64ToUint8Array((await response.json()).public_key);
  }

  // Also run on every visit, so the server keeps up with this browser: the person signed in now,
  // and a new subscription when the server's key changed.
  async function subscribe(registration) {
    const key = await serverKey();
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
      await subscription.unsubscribe();
      subscription = null;
    }
    if (!subscription) {
      subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: key,
      });
    }
    await request("POST", enable.dataset.subscriptionsUrl, subscription.toJSON());
  }

  async function turnOn() {
    enable.disabled = true;
    try {
      // First, while the click still counts as a user gesture.
      const permission = await Notification.requestPermission();
      if (permission !== "granted") {
        show(false, "Notifications are blocked for this site; allow them in the browser's site settings.");
        return;
      }
      await navigator.serviceWorker.register(enable.dataset.workerUrl, { scope: "/" });
      await subscribe(await navigator.serviceWorker.ready);
      show(true, "Browser notifications are on.");
    } catch (error) {
      show(false, "Could not turn on browser notifications: " + error.message);
    } finally {
      enable.disabled = false;
    }
  }

  async function turnOff() {
    disable.disabled = true;
    try {
      const registration = await navigator.serviceWorker.getRegistration("/");
      const subscription = registration && (await registration.pushManager.getSubscription());
      if (subscription) {
        try {
          await request("DELETE", enable.dataset.subscriptionsUrl, { endpoint: subscription.endpoint });
        } catch (error) {
          if (error.status !== 404) throw error; // 404: the server had already forgotten it.
        }
        await subscription.unsubscribe();
      }
      show(false, "Browser notifications are off.");
    } catch (error) {
      say("Could not turn off browser notifications: " + error.message);
    } finally {
      disable.disabled = false;
    }
  }

  async function start() {
    enable.addEventListener("click", turnOn);
    if (disable) disable.addEventListener("click", turnOff);
    const registration = await navigator.serviceWorker.getRegistration("/");
    const subscription = registration && (await registration.pushManager.getSubscription());
    if (!subscription || Notification.permission !== "granted") {
      show(false, Notification.permission === "denied"
        ? "Notifications are blocked for this site; allow them in the browser's site settings."
        : "Browser notifications are off.");
      return;
    }
    try {
      await subscribe(registration);
      show(true, "Browser notifications are on.");
    } catch (error) {
      show(false, "Browser notifications need turning on again: " + error.message);
    }
  }

  start();
})();
