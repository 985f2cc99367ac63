/* AgentHub service worker: shows Web Push notifications about jobs (sent by notify/webpush.py)
   when no AgentHub page is visible, and opens the job when one is clicked. Served at /sw.js so
   its scope is the whole site. */
"use strict";

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = { body: event.data.text() };
  }
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      // A visible page shows its own in-page alert (the dashboard websocket told it first).
      if (windows.some((client) => client.visibilityState === "visible")) return undefined;
      return self.registration.showNotification(data.title || "AgentHub", {
        body: data.body || "",
        tag: data.tag,
        data: { url: data.url || "/" },
      });
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const wanted = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin);
  // Only ever our own pages.
  const url = wanted.origin === self.location.origin ? wanted.href : self.location.origin + "/";
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((client) => client.url === url && "focus" in client);
      return open ? open.focus() : self.clients.openWindow(url);
    }),
  );
});
