// Names for what Gradio draws without one: the pictures' alt text, the results' and examples' labels.
() => {
  const named = {
    "#query-image img": "Your photo",
    "#regions img": "Your photo with the furniture found boxed and named",
    "#crop-picture img": "Your photo, to crop: tap two opposite corners of the piece",
    "#why img": "Your photo and the picked product side by side, the parts that look alike painted warm",
  };
  const label = () => {
    for (const [selector, text] of Object.entries(named)) {
      document.querySelectorAll(selector).forEach((img) => { if (!img.alt) img.alt = text; });
    }
    document.querySelectorAll("#results .thumbnail-item").forEach((button) => {
      const caption = button.querySelector(".caption-label");
      if (caption && button.getAttribute("aria-label") !== caption.textContent) {
        button.setAttribute("aria-label", caption.textContent);
      }
      // The button says what the result is; its picture would only say it again.
      button.querySelectorAll("img").forEach((img) => { if (img.alt) img.alt = ""; });
    });
    // Footer icons next to their words ("Settings"): decorative.
    document.querySelectorAll("footer a img, footer button img").forEach((img) => { if (img.alt) img.alt = ""; });
    document.querySelectorAll("#examples button").forEach((button, i) => {
      if (!button.getAttribute("aria-label")) button.setAttribute("aria-label", `Try example photo ${i + 1}`);
      button.querySelectorAll("img").forEach((img) => { if (!img.alt) img.alt = `Example photo ${i + 1}`; });
    });
  };
  new MutationObserver(label).observe(document.body, { childList: true, subtree: true, attributes: true,
                                                        attributeFilter: ["src"] });
  label();

  // A phone's photo (2-5 MB) is sent at the size the search reads at most, 2048 px on its longer side, as a JPEG:
  // on a phone's network the upload is most of the wait. Upright (its EXIF orientation applied), without the rest
  // of its EXIF (where it was taken). Smaller files, and any photo this browser cannot shrink, go as chosen.
  const LONGEST = 2048, SHRINK_FROM_BYTES = 1_000_000;
  const shrunk = async (file) => {
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    const scale = LONGEST / Math.max(bitmap.width, bitmap.height);
    if (scale >= 1) return file;
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.92));
    if (!blob || blob.size >= file.size) return file;
    return new File([blob], file.name.replace(/\.[^.]*$/, "") + ".jpg", { type: "image/jpeg" });
  };
  document.addEventListener("change", async (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.closest("#query-image")
        || input.dataset.shrunk || !input.files || input.files.length !== 1) return;
    const file = input.files[0];
    if (!file.type.startsWith("image/") || file.size < SHRINK_FROM_BYTES) return;
    event.stopImmediatePropagation();
    let sent = file;
    try { sent = await shrunk(file); } catch (error) { /* sent as chosen: the server reads what it can */ }
    const chosen = new DataTransfer();
    chosen.items.add(sent);
    input.files = chosen.files;
    input.dataset.shrunk = "yes";
    input.dispatchEvent(new Event("change", { bubbles: true }));
    delete input.dataset.shrunk;
  }, true);
}
