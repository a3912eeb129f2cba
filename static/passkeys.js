// Passkeys (WebAuthn) on Hoviyat's pages, through the browser's navigator.credentials.
//
// Each <form data-passkey="CEREMONY"> holds a hidden "credential" field. On submit, the script asks the server
// for the ceremony's options (a single-use challenge), lets the browser create or use a passkey, puts the
// browser's answer in "credential" as JSON and sends the form; the server checks it. The form's passkey
// buttons (.passkey-action) are hidden in the page and shown only where the browser has PublicKeyCredential;
// every other way in works without this script. A form with data-conditional also offers the site's passkeys
// in the autofill of an input marked autocomplete="username webauthn", where the browser can.
(function () {
  "use strict";

  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromBase64url(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function withBinaryIds(descriptors) {
    return (descriptors || []).map(function (descriptor) {
      return Object.assign({}, descriptor, { id: fromBase64url(descriptor.id) });
    });
  }

  function creationOptions(options) {
    options.challenge = fromBase64url(options.challenge);
    options.user.id = fromBase64url(options.user.id);
    options.excludeCredentials = withBinaryIds(options.excludeCredentials);
    return options;
  }

  function requestOptions(options) {
    options.challenge = fromBase64url(options.challenge);
    options.allowCredentials = withBinaryIds(options.allowCredentials);
    return options;
  }

  // The answer in the JSON shape of WebAuthn Level 3 (RegistrationResponseJSON, AuthenticationResponseJSON).
  function answerJSON(credential) {
    const response = credential.response;
    const answer = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: toBase64url(response.clientDataJSON) },
    };
    if (credential.authenticatorAttachment) {
      answer.authenticatorAttachment = credential.authenticatorAttachment;
    }
    if (response.attestationObject) {
      answer.response.attestationObject = toBase64url(response.attestationObject);
      answer.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      answer.response.authenticatorData = toBase64url(response.authenticatorData);
      answer.response.signature = toBase64url(response.signature);
      if (response.userHandle) {
        answer.response.userHandle = toBase64url(response.userHandle);
      }
    }
    return JSON.stringify(answer);
  }

  async function fetchOptions(form) {
    const body = new FormData();
    body.append("ceremony", form.dataset.passkey);
    const response = await fetch(form.dataset.optionsUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": form.elements.csrf_token.value, Accept: "application/json" },
    });
    if (response.status === 403 && form.dataset.confirmUrl) {
      // The login is not fresh enough to change passkeys: confirm it is you, then come back.
      window.location.assign(form.dataset.confirmUrl);
      throw new DOMException("confirming", "AbortError");
    }
    if (!response.ok) {
      throw new Error("passkey options: HTTP " + response.status);
    }
    return response.json();
  }

  async function runCeremony(form, conditional) {
    const options = await fetchOptions(form);
    let credential;
    if (form.dataset.passkey === "register") {
      credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
    } else {
      const request = { publicKey: requestOptions(options) };
      if (conditional) {
        request.mediation = "conditional";
        request.signal = conditional.signal;
      }
      credential = await navigator.credentials.get(request);
    }
    if (!credential) {
      return;
    }
    form.elements.credential.value = answerJSON(credential);
    form.submit(); // submit() fires no submit event: the answer goes to the server as it is
  }

  function showFailure(form, error) {
    if (error && error.name === "AbortError") {
      return;
    }
    const box = form.querySelector(".passkey-error");
    if (box) {
      box.textContent = form.dataset.failed || String(error);
      box.hidden = false;
    }
  }

  document.querySelectorAll(".passkey-unsupported").forEach(function (element) {
    element.hidden = true;
  });
  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    form.querySelectorAll(".passkey-action").forEach(function (element) {
      element.hidden = false;
    });
    let conditional = null;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (conditional) {
        conditional.abort();
        conditional = null;
      }
      const box = form.querySelector(".passkey-error");
      if (box) {
        box.hidden = true;
      }
      runCeremony(form, null).catch(function (error) {
        showFailure(form, error);
      });
    });
    if ("conditional" in form.dataset && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        if (!available) {
          return;
        }
        conditional = new AbortController();
        // A passkey picked from the national-code field's autofill logs in; nothing to say when none is.
        runCeremony(form, conditional).catch(function () {});
      });
    }
  });
})();
