// In the page's head, so that it listens before the first photo can be chosen (the page's own script runs later,
// once Gradio has drawn the page).
(() => {
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
    const context = canvas.getContext("2d");
    context.fillStyle = "#ffffff";  // a cut-out's transparency on white, as the server flattens it (not JPEG's black)
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.92));
    if (!blob || blob.size >= file.size) return file;
    return new File([blob], file.name.replace(/\.[^.]*$/, "") + ".jpg", { type: "image/jpeg" });
  };
  const send = async (input, file) => {
    let sent = file;
    try { sent = await shrunk(file); } catch (error) { /* sent as chosen: the server reads what it can */ }
    const chosen = new DataTransfer();
    chosen.items.add(sent);
    input.files = chosen.files;
    input.dataset.shrunk = "yes";
    input.dispatchEvent(new Event("change", { bubbles: true }));
    delete input.dataset.shrunk;
  };
  const large = (files) => Boolean(files) && files.length === 1 && files[0].type.startsWith("image/")
    && files[0].size >= SHRINK_FROM_BYTES;
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.closest("#query-image")
        || input.dataset.shrunk || !large(input.files)) return;
    event.stopImmediatePropagation();
    send(input, input.files[0]);
  }, true);
  // A photo dropped on the upload area goes the same way, through the area's file input.
  document.addEventListener("drop", (event) => {
    const area = event.target instanceof Element ? event.target.closest("#query-image") : null;
    const input = area ? area.querySelector("input[type=file]") : null;
    if (!input || !large(event.dataTransfer && event.dataTransfer.files)) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    send(input, event.dataTransfer.files[0]);
  }, true);
})();
