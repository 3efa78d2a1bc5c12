// RadAI interactive viewer: turns every <div class="radai-viewer" data-source="ID"> into a NiiVue viewer
// (multiplanar slices + 3D rendering) of the volumes embedded in <script type="application/json" id="ID">.
// Needs the vendored NiiVue UMD build (global `niivue`) inlined before this script. No network: the volumes
// are gzip NIfTI in base64 inside the page. Each viewer sets data-status="ready" once drawn, or
// data-status="error" with the message shown in its status line.
(function () {
  'use strict';

  function el (tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function rgbCss (rgb) {
    return 'rgb(' + rgb.map(function (c) { return Math.round(c * 255); }).join(',') + ')';
  }

  function slider (label, min, max, step, value, onInput) {
    const wrap = el('label', { class: 'radai-control' }, label + ' ');
    const input = el('input', { type: 'range', min: min, max: max, step: step, value: value });
    const shown = el('output', {}, String(value));
    input.addEventListener('input', function () { shown.textContent = input.value; onInput(parseFloat(input.value)); });
    wrap.append(input, shown);
    return wrap;
  }

  function formatValue (layer, value) {
    if (layer.role === 'segmentation') {
      const entry = layer.labels.find(function (l) { return l.display === Math.round(value); });
      return entry ? entry.name + ' (label ' + entry.value + ')' : '—';
    }
    if (!Number.isFinite(value)) return '—';
    const text = Number.isInteger(value) || Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(2);
    return text + (layer.unit ? ' ' + layer.unit : '');
  }

  async function inflate (base64, Type) {
    const bytes = Uint8Array.from(atob(base64), function (c) { return c.charCodeAt(0); });
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Type(await new Response(stream).arrayBuffer());
  }

  async function addMeshes (nv, data, controls) {
    const toggles = el('span', { class: 'radai-control' }, '3D surfaces ');
    for (const entry of data.meshes || []) {
      const vertices = await inflate(entry.vertices, Float32Array);
      const triangles = await inflate(entry.triangles, Uint32Array);
      const mesh = new niivue.NVMesh(vertices, triangles, entry.name, new Uint8Array(entry.rgba255), entry.opacity,
        true, nv.gl);
      nv.addMesh(mesh);
      const box = el('input', { type: 'checkbox', checked: 'checked' });
      box.addEventListener('change', function () { nv.setMeshProperty(mesh.id, 'visible', box.checked); });
      const label = el('label', { class: 'radai-toggle' });
      label.append(box, document.createTextNode(entry.name));
      toggles.append(label);
    }
    if ((data.meshes || []).length) controls.append(toggles);
  }

  function readout (data, location) {
    const mm = location.mm;
    const parts = ['R ' + mm[0].toFixed(1), 'A ' + mm[1].toFixed(1), 'S ' + mm[2].toFixed(1) + ' mm (RAS)'];
    const values = data.layers.map(function (layer, index) {
      const entry = location.values[index];
      return layer.title + ': ' + (entry ? formatValue(layer, entry.value) : '—');
    });
    return parts.join('  ') + '  ·  ' + values.join('  ·  ');
  }

  function legend (data) {
    const box = el('div', { class: 'radai-legend' });
    for (const entry of data.meshes || []) {
      if (entry.kind !== 'context') continue;
      const item = el('span', { class: 'radai-legend-item' });
      const swatch = el('span', { class: 'radai-swatch' });
      swatch.style.background = rgbCss(entry.rgba255.slice(0, 3).map(function (c) { return c / 255; }));
      item.append(swatch, document.createTextNode(entry.name + ' (3D landmark)'));
      box.append(item);
    }
    for (const layer of data.layers) {
      if (layer.role === 'segmentation') {
        for (const entry of layer.labels) {
          const item = el('span', { class: 'radai-legend-item' });
          const swatch = el('span', { class: 'radai-swatch' });
          swatch.style.background = rgbCss(entry.rgb);
          item.append(swatch, document.createTextNode(entry.name));
          box.append(item);
        }
      } else if (layer.role === 'saliency') {
        const item = el('span', { class: 'radai-legend-item' });
        const swatch = el('span', { class: 'radai-swatch radai-heat-swatch' });
        swatch.style.background = 'linear-gradient(90deg,' + data.heat_css.join(',') + ')';
        item.append(swatch, document.createTextNode(layer.title + ' (0 → 1)'));
        box.append(item);
      }
    }
    return box;
  }

  async function initViewer (root) {
    const data = JSON.parse(document.getElementById(root.dataset.source).textContent);
    const status = root.querySelector('.radai-status');
    const canvas = root.querySelector('canvas');
    const nv = new niivue.Niivue(Object.assign({
      backColor: [0, 0, 0, 1], show3Dcrosshair: true, dragAndDropEnabled: false, meshXRay: 1.0,
      isRadiologicalConvention: true, loadingText: '', logLevel: 'error', isColorbar: false,
      multiplanarShowRender: niivue.SHOW_RENDER.ALWAYS, isOrientCube: true, crosshairColor: [0.3, 0.9, 1.0, 1.0],
      crosshairWidth: 1, meshThicknessOn2D: 0, isNearestInterpolation: true, multiplanarLayout: niivue.MULTIPLANAR_TYPE.GRID
    }, data.options || {}));
    await nv.attachToCanvas(canvas);
    nv.addColormap('radai-heat', data.heat_colormap);
    nv.addColormap('radai-image', data.image_colormap);
    for (const layer of data.layers) {
      const image = await niivue.NVImage.loadFromBase64({
        base64: layer.base64, name: layer.file, colormap: layer.colormap, opacity: layer.opacity,
        cal_min: layer.cal_min, cal_max: layer.cal_max
      });
      if (layer.role === 'segmentation') image.setColormapLabel(layer.lut);
      nv.addVolume(image);
    }
    nv.setSliceType(data.slice_type === 'render' ? nv.sliceTypeRender : nv.sliceTypeMultiplanar);
    // 3D starts from the front (azimuth 180 = the patient's anterior), slightly from above
    nv.setRenderAzimuthElevation(...(data.render_azimuth_elevation || [180, 15]));
    if (data.clip_plane) nv.setClipPlane(data.clip_plane);
    const controls = root.querySelector('.radai-controls');
    const layouts = el('span', { class: 'radai-control' }, 'View ');
    for (const [name, type] of [['slices + 3D', nv.sliceTypeMultiplanar], ['3D', nv.sliceTypeRender],
      ['axial', nv.sliceTypeAxial], ['coronal', nv.sliceTypeCoronal], ['sagittal', nv.sliceTypeSagittal]]) {
      const button = el('button', { type: 'button' }, name);
      button.addEventListener('click', function () { nv.setSliceType(type); });
      layouts.append(button);
    }
    controls.append(layouts);
    data.layers.forEach(function (layer, index) {
      if (layer.role === 'segmentation') {
        controls.append(slider(layer.title + ' opacity', 0, 1, 0.05, layer.opacity,
          function (v) { nv.setOpacity(index, v); }));
      } else if (layer.role === 'saliency') {
        controls.append(slider(layer.title + ' threshold', 0, 0.95, 0.05, layer.cal_min, function (v) {
          nv.volumes[index].cal_min = v;
          nv.updateGLVolume();
        }));
        controls.append(slider(layer.title + ' opacity', 0, 1, 0.05, layer.opacity,
          function (v) { nv.setOpacity(index, v); }));
      }
    });
    await addMeshes(nv, data, controls);
    root.querySelector('.radai-legend-slot').append(legend(data));
    const position = root.querySelector('.radai-readout');
    nv.onLocationChange = function (location) { position.textContent = readout(data, location); };
    if (data.focus_mm) {
      nv.scene.crosshairPos = nv.mm2frac(data.focus_mm);
      nv.drawScene();
      nv.createOnLocationChange();
    }
    root.radaiNiivue = nv;
    status.textContent = 'Drag in a slice to move the cross-hair; drag in 3D to turn the volume; scroll to zoom.';
    root.dataset.status = 'ready';
  }

  function launch (root) {
    if (root.dataset.status !== 'waiting') return;
    root.dataset.status = 'loading';
    initViewer(root).catch(function (error) {
      root.dataset.status = 'error';
      root.querySelector('.radai-status').textContent = 'The viewer could not start: ' + error +
        ' (it needs a browser with WebGL2).';
    });
  }

  // A viewer starts when it comes near the screen: a long report does not hold one WebGL context (browsers allow
  // about 16) and one copy of its volumes per case at once before the reader gets there.
  function start () {
    const viewers = document.querySelectorAll('.radai-viewer');
    viewers.forEach(function (root) { root.dataset.status = 'waiting'; });
    if (!('IntersectionObserver' in window)) { viewers.forEach(launch); return; }
    const observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) { observer.unobserve(entry.target); launch(entry.target); }
      });
    }, { rootMargin: '300px' });
    viewers.forEach(function (root) { observer.observe(root); });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
