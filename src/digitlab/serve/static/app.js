// digitlab's drawing page: draw or upload, send to /api/predict, show what comes back; with a
// server started with --collect, confirm or correct readings, practise, and fine-tune.
"use strict";

(() => {
  const STROKE_WIDTH = 22; // on the 280 px pad: about a tenth of a digit's height, as in MNIST
  const THROTTLE_MS = 150; // at most one request per this while drawing
  const SEEN_SCALE = 5; // screen pixels per model pixel in "what the model saw"
  const SEEN_GAP = 4; // model pixels between digits there

  const canvas = document.getElementById("canvas");
  const pad = canvas.getContext("2d");
  const clearButton = document.getElementById("clear");
  const upload = document.getElementById("upload");
  const multiDigit = document.getElementById("multi-digit");
  const result = document.getElementById("result");
  const confidence = document.getElementById("confidence");
  const statusLine = document.getElementById("status");
  const bars = document.getElementById("bars");
  const barsCaption = document.getElementById("bars-caption");
  const seen = document.getElementById("seen");
  const photoFigure = document.getElementById("photo-figure");
  const photo = document.getElementById("photo");
  const photoCaption = document.getElementById("photo-caption");
  const tokenForm = document.getElementById("token-form");
  const tokenInput = document.getElementById("token");
  const verdict = document.getElementById("verdict");
  const rightButton = document.getElementById("right");
  const correctButton = document.getElementById("correct");
  const digitPicker = document.getElementById("digit-picker");
  const teach = document.getElementById("teach");
  const collectFolder = document.getElementById("collect-folder");
  const practice = document.getElementById("practice");
  const roundsInput = document.getElementById("rounds");
  const practicePanel = document.getElementById("practice-panel");
  const prompt = document.getElementById("prompt");
  const savePractice = document.getElementById("save-practice");
  const skipPractice = document.getElementById("skip-practice");
  const countDigits = document.getElementById("count-digits");
  const countValues = document.getElementById("count-values");
  const finetuneButton = document.getElementById("finetune");
  const teachStatus = document.getElementById("teach-status");
  const POLL_MS = 1000; // how often a running fine-tune is asked how far it is
  const ENOUGH = 20; // examples of a digit that make a good start

  // The API token, if the server needs one: from #token= in the address (a fragment never
  // reaches the server or its logs; ?token= works too), then taken out of it, kept in memory only.
  const parameters = new URLSearchParams(window.location.search);
  const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  let token = fragment.get("token") || parameters.get("token");
  if (fragment.has("token") || parameters.has("token")) {
    parameters.delete("token");
    const query = parameters.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
  }

  let generation = 0; // bumped by Clear and by uploads, so late answers are dropped
  let drawing = false;
  let lastPoint = null;
  let hasInk = false;
  let inFlight = false;
  let wanted = false;
  let lastSent = -Infinity;
  let timer = null;
  let lastAnswer = null;
  let selected = 0;
  let retry = null; // what to send again once a token is given
  let collecting = false; // the server keeps examples (serve --collect)
  let lastSource = null; // what the shown reading was read from: {kind: "drawing"} or {kind: "photo", file}
  let practiceStep = 0; // in practice mode: which digit of which round is asked for

  // ------------------------------------------------------------------ probability bars

  const barRows = [];
  for (let digit = 0; digit < 10; digit += 1) {
    const row = document.createElement("div");
    row.className = "bar-row";
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = String(digit);
    const track = document.createElement("div");
    track.className = "bar-track";
    track.setAttribute("role", "meter");
    track.setAttribute("aria-label", "probability of " + digit);
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "100");
    track.setAttribute("aria-valuenow", "0");
    const fill = document.createElement("div");
    fill.className = "bar-fill";
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = "0%";
    row.append(label, track, value);
    bars.appendChild(row);
    barRows.push({ row, track, fill, value });
  }

  function formatPercent(percent) {
    if (percent < 0.05) return "0%";
    if (percent < 9.95) return percent.toFixed(1) + "%";
    return Math.round(percent) + "%";
  }

  function showBars(probabilities) {
    const best = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
    barRows.forEach((bar, digit) => {
      const percent = probabilities ? probabilities[digit] * 100 : 0;
      bar.fill.style.width = percent.toFixed(1) + "%";
      bar.value.textContent = formatPercent(percent);
      bar.track.setAttribute("aria-valuenow", percent.toFixed(1));
      bar.row.classList.toggle("best", digit === best);
    });
  }

  // ------------------------------------------------------------------ the drawing pad

  function blankPad() {
    pad.fillStyle = "#000";
    pad.fillRect(0, 0, canvas.width, canvas.height);
    pad.strokeStyle = "#fff";
    pad.fillStyle = "#fff";
    pad.lineWidth = STROKE_WIDTH;
    pad.lineCap = "round";
    pad.lineJoin = "round";
  }

  function padPoint(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  function dot(point) {
    pad.beginPath();
    pad.arc(point.x, point.y, STROKE_WIDTH / 2, 0, 2 * Math.PI);
    pad.fill();
  }

  function lineTo(point) {
    pad.beginPath();
    pad.moveTo(lastPoint.x, lastPoint.y);
    pad.lineTo(point.x, point.y);
    pad.stroke();
    lastPoint = point;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    if (!photoFigure.hidden) {
      // Drawing after an upload: the reading shown is the drawing's again.
      photoFigure.hidden = true;
      generation += 1;
    }
    drawing = true;
    hasInk = true;
    lastPoint = padPoint(event);
    dot(lastPoint);
    requestReading();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const each of events.length ? events : [event]) lineTo(padPoint(each));
    requestReading();
  });

  function endStroke(event) {
    if (!drawing) return;
    drawing = false;
    if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
    requestReading();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  function clearAll() {
    generation += 1;
    wanted = false;
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    hasInk = false;
    blankPad();
    photoFigure.hidden = true;
    photo.removeAttribute("src");
    upload.value = "";
    showAnswer(null);
    setStatus(practice.checked ? "Write the digit asked for, then save it." : "Draw a digit in the black square.");
  }
  clearButton.addEventListener("click", clearAll);
  multiDigit.addEventListener("change", () => {
    if (!photoFigure.hidden && upload.files.length) sendPhoto(upload.files[0]);
    else if (hasInk) requestReading();
  });

  // ------------------------------------------------------------------ talking to the API

  function setStatus(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  async function postPrediction(body, isJson) {
    return callApi("api/predict", "POST", body, isJson);
  }

  async function callApi(path, method, body, isJson) {
    const headers = {};
    if (isJson) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, { method, headers, body });
    let answer = null;
    try {
      answer = await response.json();
    } catch (error) {
      answer = null;
    }
    if (!response.ok) {
      const problem = new Error(answer && typeof answer.detail === "string" ? answer.detail : "the server answered " + response.status);
      problem.status = response.status;
      throw problem;
    }
    return answer;
  }

  function handleFailure(error, again) {
    if (error.status === 401) {
      retry = again;
      tokenForm.hidden = false;
      tokenInput.focus();
      setStatus(token ? "That API token was not accepted." : "This server needs an API token.", true);
    } else {
      setStatus(error.message || "Could not reach the server.", true);
    }
  }

  function requestReading() {
    if (!hasInk) return;
    wanted = true;
    if (inFlight || timer !== null) return;
    const wait = Math.max(0, lastSent + THROTTLE_MS - performance.now());
    timer = setTimeout(sendDrawing, wait);
  }

  async function sendDrawing() {
    timer = null;
    if (!wanted || inFlight || !hasInk) return;
    wanted = false;
    inFlight = true;
    lastSent = performance.now();
    const mine = generation;
    const body = JSON.stringify({ image: canvas.toDataURL("image/png"), multi_digit: multiDigit.checked });
    try {
      const answer = await postPrediction(body, true);
      if (mine === generation) {
        lastSource = { kind: "drawing" };
        showAnswer(answer);
      }
    } catch (error) {
      if (mine === generation) handleFailure(error, () => requestReading());
    } finally {
      inFlight = false;
      if (wanted) requestReading();
    }
  }

  async function sendPhoto(file) {
    generation += 1;
    const mine = generation;
    const form = new FormData();
    form.append("image", file);
    form.append("multi_digit", multiDigit.checked ? "true" : "false");
    setStatus("Reading the photo…");
    try {
      const answer = await postPrediction(form, false);
      if (mine === generation) {
        lastSource = { kind: "photo", file };
        showAnswer(answer);
        photoCaption.textContent = answer.found ? "Read as “" + answer.text + "”" : "No digit found in this photo";
      }
    } catch (error) {
      if (mine === generation) handleFailure(error, () => sendPhoto(file));
    }
  }

  upload.addEventListener("change", () => {
    const file = upload.files[0];
    if (!file) return;
    if (photo.src) URL.revokeObjectURL(photo.src);
    photo.src = URL.createObjectURL(file);
    photoCaption.textContent = file.name;
    photoFigure.hidden = false;
    hasInk = false;
    blankPad();
    sendPhoto(file);
  });

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    token = tokenInput.value.trim() || null;
    tokenInput.value = "";
    tokenForm.hidden = true;
    setStatus("Token set.");
    if (retry) {
      const again = retry;
      retry = null;
      again();
    }
  });

  // ------------------------------------------------------------------ showing the answer

  function showSeen(digits) {
    const count = Math.max(digits.length, 1);
    const side = 28;
    seen.width = count * side + (count - 1) * SEEN_GAP;
    seen.height = side;
    seen.style.width = seen.width * SEEN_SCALE + "px";
    const context = seen.getContext("2d");
    context.fillStyle = "#000";
    context.fillRect(0, 0, seen.width, seen.height);
    digits.forEach((digit, index) => {
      const image = context.createImageData(side, side);
      for (let row = 0; row < side; row += 1) {
        for (let column = 0; column < side; column += 1) {
          const value = digit.pixels[row][column];
          const offset = (row * side + column) * 4;
          image.data[offset] = value;
          image.data[offset + 1] = value;
          image.data[offset + 2] = value;
          image.data[offset + 3] = 255;
        }
      }
      context.putImageData(image, index * (side + SEEN_GAP), 0);
    });
    if (digits.length > 1) {
      // Mark the digit whose probabilities are shown.
      context.strokeStyle = "#6366f1";
      context.lineWidth = 1;
      context.strokeRect(selected * (side + SEEN_GAP) + 0.5, 0.5, side - 1, side - 1);
    }
  }

  function showResultText(answer) {
    result.replaceChildren();
    if (!answer || !answer.found) return;
    answer.digits.forEach((digit, index) => {
      const character = document.createElement("span");
      character.textContent = String(digit.digit);
      if (answer.digits.length > 1 && index === selected) character.className = "selected";
      result.appendChild(character);
    });
  }

  function showAnswer(answer) {
    lastAnswer = answer;
    showVerdict(answer);
    if (!answer || selected >= answer.digits.length) selected = 0;
    showResultText(answer);
    if (!answer) {
      confidence.textContent = "";
      barsCaption.textContent = "";
      showBars(null);
      showSeen([]);
      return;
    }
    if (!answer.found) {
      confidence.textContent = "";
      barsCaption.textContent = "";
      showBars(null);
      showSeen([]);
      setStatus("No digit found: " + (answer.message || "no ink") + ".");
      return;
    }
    const count = answer.digits.length;
    const sure = Math.round((answer.confidence ?? answer.digits[selected].confidence) * 100);
    confidence.textContent = (count > 1 ? count + " digits, " : "") + sure + "% sure";
    const digit = answer.digits[selected];
    barsCaption.textContent = count > 1 ? "(digit " + (selected + 1) + " of " + count + ")" : "";
    showBars(digit.probabilities);
    showSeen(answer.digits);
    setStatus("Read in " + Math.round(answer.milliseconds) + " ms.");
  }

  seen.addEventListener("click", (event) => {
    if (!lastAnswer || !lastAnswer.found || lastAnswer.digits.length < 2) return;
    const box = seen.getBoundingClientRect();
    const x = ((event.clientX - box.left) * seen.width) / box.width;
    selected = Math.min(lastAnswer.digits.length - 1, Math.floor(x / (28 + SEEN_GAP)));
    showAnswer(lastAnswer);
  });


  // ------------------------------------------------------------------ teaching it your handwriting

  for (let digit = 0; digit < 10; digit += 1) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button secondary";
    button.textContent = String(digit);
    button.setAttribute("aria-label", "It is a " + digit);
    button.addEventListener("click", () => saveShown(digit));
    digitPicker.appendChild(button);
    const heading = document.createElement("th");
    heading.scope = "col";
    heading.textContent = String(digit);
    countDigits.appendChild(heading);
    const count = document.createElement("td");
    count.textContent = "0";
    countValues.appendChild(count);
  }

  function showVerdict(answer) {
    const single = answer && answer.found && answer.digits.length === 1;
    verdict.hidden = !(collecting && single && !practice.checked);
    if (verdict.hidden) digitPicker.hidden = true;
  }

  function showCounts(examples) {
    collectFolder.textContent = examples.folder;
    examples.counts.forEach((count, digit) => {
      const cell = countValues.children[digit + 1];
      cell.textContent = String(count);
      cell.classList.toggle("enough", count >= ENOUGH);
    });
  }

  function setTeachStatus(text, isError = false) {
    teachStatus.textContent = text;
    teachStatus.classList.toggle("error", isError);
  }

  async function saveExample(label) {
    // The drawing as drawn (or the photo as uploaded), with its label.
    let answer;
    if (lastSource && lastSource.kind === "photo") {
      const form = new FormData();
      form.append("image", lastSource.file);
      form.append("label", String(label));
      answer = await callApi("api/examples", "POST", form, false);
    } else {
      const body = JSON.stringify({ image: canvas.toDataURL("image/png"), label });
      answer = await callApi("api/examples", "POST", body, true);
    }
    showCounts(answer);
    return answer;
  }

  async function saveShown(label) {
    try {
      const answer = await saveExample(label);
      setTeachStatus("Saved as a " + label + " (" + answer.counts[label] + " of them now, " + answer.total + " in all).");
      clearAll();
    } catch (error) {
      handleFailure(error, () => saveShown(label));
      setTeachStatus(error.message || "Could not save the example.", true);
    }
  }

  rightButton.addEventListener("click", () => {
    if (lastAnswer && lastAnswer.found) saveShown(lastAnswer.digits[0].digit);
  });
  correctButton.addEventListener("click", () => {
    digitPicker.hidden = !digitPicker.hidden;
    if (!digitPicker.hidden) digitPicker.querySelector("button").focus();
  });

  function rounds() {
    return Math.min(50, Math.max(1, Number.parseInt(roundsInput.value, 10) || 5));
  }

  function showPrompt() {
    const total = rounds() * 10;
    if (practiceStep >= total) {
      prompt.textContent = "Done: " + rounds() + " rounds of 0 to 9. Fine-tune now, or practise more.";
      savePractice.disabled = true;
      skipPractice.disabled = true;
      return;
    }
    savePractice.disabled = false;
    skipPractice.disabled = false;
    prompt.replaceChildren("Write a ");
    const digit = document.createElement("strong");
    digit.id = "prompt-digit";
    digit.textContent = String(practiceStep % 10);
    prompt.append(digit, "  (round " + (Math.floor(practiceStep / 10) + 1) + " of " + rounds() + ")");
  }

  practice.addEventListener("change", () => {
    practicePanel.hidden = !practice.checked;
    if (practice.checked) {
      practiceStep = 0;
      multiDigit.checked = false;
      showPrompt();
      clearAll();
    } else {
      showVerdict(lastAnswer);
      if (!hasInk) setStatus("Draw a digit in the black square.");
    }
  });
  roundsInput.addEventListener("change", showPrompt);

  savePractice.addEventListener("click", async () => {
    if (!hasInk) {
      setTeachStatus("Write the " + (practiceStep % 10) + " first.", true);
      return;
    }
    const label = practiceStep % 10;
    try {
      lastSource = { kind: "drawing" };
      const answer = await saveExample(label);
      setTeachStatus("Saved a " + label + " (" + answer.counts[label] + " of them now).");
      practiceStep += 1;
      showPrompt();
      clearAll();
    } catch (error) {
      handleFailure(error, () => savePractice.click());
      setTeachStatus(error.message || "Could not save the example.", true);
    }
  });
  skipPractice.addEventListener("click", () => {
    practiceStep += 1;
    showPrompt();
    clearAll();
  });

  function showTuning(state) {
    if (state.state === "running") {
      const last = state.log.length ? state.log[state.log.length - 1] : "starting";
      setTeachStatus("Fine-tuning (" + Math.round(state.seconds || 0) + " s): " + last);
      return false;
    }
    finetuneButton.disabled = false;
    if (state.state === "failed") {
      setTeachStatus(state.error || "Fine-tuning failed.", true);
    } else if (state.state === "finished") {
      const figures = state.metrics || {};
      const percent = (value) => (value * 100).toFixed(1) + "%";
      let text = "Done: your held-out digits " + percent(figures.personal_accuracy_before) + " before, " +
        percent(figures.personal_accuracy) + " after";
      if (figures.mnist_test_accuracy !== undefined) {
        text += "; MNIST test " + percent(figures.mnist_test_accuracy_before) + " before, " +
          percent(figures.mnist_test_accuracy) + " after";
      }
      setTeachStatus(text + ". Now reading with " + state.run + ".");
      refreshHealth();
      if (hasInk) requestReading();
    }
    return true;
  }

  async function pollTuning() {
    try {
      const state = await callApi("api/finetune", "GET", undefined, false);
      if (!showTuning(state)) setTimeout(pollTuning, POLL_MS);
    } catch (error) {
      finetuneButton.disabled = false;
      setTeachStatus(error.message || "Lost touch with the fine-tune.", true);
    }
  }

  finetuneButton.addEventListener("click", async () => {
    finetuneButton.disabled = true;
    setTeachStatus("Starting the fine-tune…");
    try {
      await callApi("api/finetune", "POST", undefined, false);
      setTimeout(pollTuning, POLL_MS);
    } catch (error) {
      finetuneButton.disabled = false;
      handleFailure(error, () => finetuneButton.click());
      setTeachStatus(error.message || "Could not start fine-tuning.", true);
    }
  });

  async function startTeaching() {
    teach.hidden = false;
    try {
      showCounts(await callApi("api/examples", "GET", undefined, false));
      const state = await callApi("api/finetune", "GET", undefined, false);
      if (state.state === "running") {
        finetuneButton.disabled = true;
        pollTuning();
      }
    } catch (error) {
      handleFailure(error, startTeaching);
    }
  }

  function refreshHealth() {
    return fetch("healthz")
      .then((response) => response.json())
      .then((health) => {
        document.getElementById("model-name").textContent = health.model;
        return health;
      });
  }

  // ------------------------------------------------------------------ start

  blankPad();
  showAnswer(null);
  refreshHealth()
    .then((health) => {
      collecting = Boolean(health.collecting);
      if (collecting) startTeaching();
    })
    .catch(() => {
      document.getElementById("model-name").textContent = "(server not reachable)";
    });
})();
